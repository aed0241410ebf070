"""Whether the target server and the job's options can take what a source database holds.

Each finding names the object and the fix. Without these, init failed late (restoring an
index, a user mapping or a setting after the data was in) or, for an unlogged table with
sync, when publishing it.
"""

from __future__ import annotations

import psycopg

from worker.engines.pg.catalog import Table
from worker.engines.pg.context import Context
from worker.engines.pg.roles import referenced_roles
from worker.engines.pg.tools import connect

LISTED = 5

# The view, not pg_user_mapping: any user may read it (without the options, for others).
_USER_MAPPINGS = "SELECT usename, srvname FROM pg_user_mappings WHERE umuser <> 0 ORDER BY 1, 2"

_UNLOGGED = "SELECT oid::regclass::text FROM pg_class WHERE oid = ANY(%s) AND relpersistence = 'u' ORDER BY 1"

# What the defaults, check constraints and indexes of the chosen tables use that pg_dump -t
# leaves out: functions, sequences no chosen table owns, objects of extensions.
_NEEDS_OF_EXPRESSIONS = """
WITH used AS (
    SELECT ad.adrelid AS rel, 'default of ' || quote_ident(a.attname) AS what, d.refclassid, d.refobjid
    FROM pg_attrdef ad JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
    JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
    UNION ALL
    SELECT c.conrelid, 'constraint ' || quote_ident(c.conname), d.refclassid, d.refobjid
    FROM pg_constraint c JOIN pg_depend d ON d.classid = 'pg_constraint'::regclass AND d.objid = c.oid
    WHERE c.contype = 'c'
    UNION ALL
    SELECT x.indrelid, 'index ' || x.indexrelid::regclass::text, d.refclassid, d.refobjid
    FROM pg_index x JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = x.indexrelid
), needed AS (
    SELECT u.rel, u.what, u.refclassid, u.refobjid,
           (SELECT e.refobjid FROM pg_depend e WHERE e.classid = u.refclassid AND e.objid = u.refobjid
            AND e.refclassid = 'pg_extension'::regclass AND e.deptype = 'e') AS extension
    FROM used u WHERE u.rel = ANY(%(chosen)s) AND u.refclassid <> 'pg_namespace'::regclass
)
SELECT DISTINCT format('%%s (%%s) needs %%s', n.rel::regclass, n.what,
    CASE WHEN n.extension IS NOT NULL
         THEN 'extension ' || (SELECT extname FROM pg_extension WHERE oid = n.extension)
         WHEN n.refclassid = 'pg_proc'::regclass THEN 'function ' || n.refobjid::regprocedure::text
         ELSE 'sequence ' || n.refobjid::regclass::text END)
FROM needed n
WHERE n.extension IS NOT NULL
   OR (n.refclassid = 'pg_proc'::regclass
       AND (SELECT pronamespace FROM pg_proc WHERE oid = n.refobjid) <> 'pg_catalog'::regnamespace)
   OR (n.refclassid = 'pg_class'::regclass AND (SELECT relkind FROM pg_class WHERE oid = n.refobjid) = 'S'
       AND NOT EXISTS (SELECT 1 FROM pg_depend o WHERE o.classid = 'pg_class'::regclass
                       AND o.objid = n.refobjid AND o.refobjid = ANY(%(chosen)s) AND o.deptype IN ('a', 'i')))
ORDER BY 1
"""

# Tablespaces of the chosen tables and of their indexes (pg_dump restores both into them).
_TABLESPACES = """
SELECT DISTINCT t.spcname, c.oid::regclass::text
FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace
WHERE c.oid = ANY(%(chosen)s) OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = ANY(%(chosen)s))
ORDER BY 1, 2
"""

_SETTINGS = """
SELECT split_part(s, '=', 1), substr(s, strpos(s, '=') + 1)
FROM pg_db_role_setting r JOIN pg_database d ON d.oid = r.setdatabase, unnest(r.setconfig) s
WHERE d.datname = current_database() AND r.setrole = 0 ORDER BY 1
"""

_COMPRESSED = """
SELECT DISTINCT a.attrelid::regclass::text FROM pg_attribute a
WHERE a.attrelid = ANY(%s) AND a.attcompression = 'l' AND NOT a.attisdropped ORDER BY 1
"""

# Columns of the chosen tables, and (copying the whole database) collations defined in it.
_ICU_COLLATIONS = """
SELECT DISTINCT format('%%s.%%s uses collation %%s', a.attrelid::regclass, quote_ident(a.attname),
                       c.oid::regcollation)
FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
WHERE a.attrelid = ANY(%(chosen)s) AND c.collprovider = 'i' AND NOT a.attisdropped
UNION
SELECT 'collation ' || oid::regcollation::text FROM pg_collation
WHERE NOT %(filtered)s AND collprovider = 'i' AND collnamespace <> 'pg_catalog'::regnamespace
ORDER BY 1
"""


def _listing(items: list[str]) -> str:
    more = f" and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return ", ".join(items[:LISTED]) + more


class _Target:
    """What the target server has, read once per job."""

    def __init__(self, tgt: psycopg.Connection) -> None:
        self.roles = {r[0] for r in tgt.execute("SELECT rolname FROM pg_roles")}
        self.tablespaces = {r[0] for r in tgt.execute("SELECT spcname FROM pg_tablespace")}
        self.settings: dict[str, list[str] | None] = {
            name: values for name, values in tgt.execute("SELECT name, enumvals FROM pg_settings")
        }
        self.icu = bool(tgt.execute("SELECT 1 FROM pg_collation WHERE collprovider = 'i' LIMIT 1").fetchone())
        self.lz4 = "lz4" in (self.settings.get("default_toast_compression") or [])


def _setting_problem(target: _Target, database: str, name: str, value: str) -> str | None:
    fix = (
        f"ALTER DATABASE {database} RESET {name} on the source for the copy (and set it on the target "
        "after), or exclude the database"
    )
    if name not in target.settings:
        if "." in name:
            return None  # a placeholder (an extension's setting): any server takes it
        return f"database {database} sets {name}, which the target server does not know: {fix}"
    values = target.settings[name]
    if values and value.strip("'\"").lower() not in [v.lower() for v in values]:
        return f"database {database} sets {name} = {value}, which the target server does not accept: {fix}"
    return None


def database_problems(
    ctx: Context,
    target: _Target,
    database: str,
    chosen: list[Table],
    *,
    with_sync: bool,
    copied_roles: set[str],
) -> list[str]:
    problems: list[str] = []
    oids = {"chosen": [t.oid for t in chosen]}
    filtered = ctx.has_include_rules(database)
    with connect(ctx.source, database) as src:
        src.execute("SET search_path = ''")  # names come back schema-qualified
        mappings = [] if filtered else src.execute(_USER_MAPPINGS).fetchall()
        unlogged = [r[0] for r in src.execute(_UNLOGGED, [oids["chosen"]])] if with_sync else []
        needs = [r[0] for r in src.execute(_NEEDS_OF_EXPRESSIONS, oids)] if filtered else []
        spaces = src.execute(_TABLESPACES, oids).fetchall()
        settings = src.execute(_SETTINGS).fetchall()
        compressed = [] if target.lz4 else [r[0] for r in src.execute(_COMPRESSED, [oids["chosen"]])]
        if target.icu:
            collated = []
        else:
            collated = [r[0] for r in src.execute(_ICU_COLLATIONS, {**oids, "filtered": filtered})]
    lacking = [
        f"{role} (server {server})" for role, server in mappings if role not in target.roles | copied_roles
    ]
    if lacking:
        problems.append(
            f"user mappings in {database} are for roles the target lacks: {_listing(lacking)}; "
            "CREATE ROLE them on the target first (copy_roles makes only the roles that grants and "
            "policies name), "
            "or drop the user mappings"
        )
    if unlogged:
        problems.append(
            f"{_listing([f'{database}.{name}' for name in unlogged])} are UNLOGGED: logical replication "
            "cannot publish them; ALTER TABLE ... SET LOGGED, exclude them, or submit without sync"
        )
    if needs:
        problems.append(
            f"include_tables in {database} leaves out what copied tables need (pg_dump -t copies no "
            f"function, sequence a table does not own or extension): {_listing(needs)}; "
            "copy the whole database (exclude_tables instead), or drop what needs them"
        )
    missing_spaces = [f"{name} ({relation})" for name, relation in spaces if name not in target.tablespaces]
    if missing_spaces:
        problems.append(
            f"relations of {database} are in tablespaces the target lacks: {_listing(missing_spaces)}; "
            "CREATE TABLESPACE them on the target first"
        )
    problems += [p for name, value in settings if (p := _setting_problem(target, database, name, value))]
    if compressed:
        problems.append(
            f"tables of {database} have lz4-compressed columns and the target server has no lz4: "
            f"{_listing(compressed)}; ALTER TABLE ... ALTER COLUMN ... SET COMPRESSION pglz on the source "
            "(new rows), or use a target built with lz4"
        )
    if collated:
        problems.append(
            f"{database} uses ICU collations and the target server has no ICU: "
            f"{_listing(collated)}; use a target built with ICU, or change those collations"
        )
    return problems


def job_problems(ctx: Context, databases: list[str], *, with_sync: bool) -> list[str]:
    with connect(ctx.target) as tgt:
        target = _Target(tgt)
    copied_roles = set(referenced_roles(ctx, databases)) if ctx.options.copy_roles else set()
    problems: list[str] = []
    for database in databases:
        chosen, _ = ctx.tables(database)
        problems += database_problems(
            ctx, target, database, chosen, with_sync=with_sync, copied_roles=copied_roles
        )
    return problems
