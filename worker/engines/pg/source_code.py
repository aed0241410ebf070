"""Code from the source that the copy or the replication would run on the target.

`pg_restore --no-owner` makes the target user own every copied object, so whatever the
target evaluates while copying runs with the target user's rights: a CHECK constraint's
function is called for every row COPY writes, an index expression when the index is
built, a materialized view's query when pg_restore refreshes it, an `ENABLE ALWAYS` or
`ENABLE REPLICA` trigger in the subscription's apply worker. A role that owns one source
database can plant such a function and, through the copy, change the target user's
password, create roles or (on a superuser target) run programs on the target's host.

Unless the job sets `trust_source_code`, `validate` and `init` refuse, naming the objects,
any database where such an evaluation calls a function that is not built in (an OID of
PostgreSQL's own catalogue, or a member of an installed extension) or a built-in in
`DENIED_BUILTINS`, and the database settings that would change the rights or the name
resolution of later sessions (`DENIED_SETTINGS`, a `search_path` that puts a schema before
`pg_catalog`).
"""

from __future__ import annotations

from worker.engines.pg.context import Context
from worker.engines.pg.tools import connect

# Objects with OIDs below this come with the server (pg_catalog, information_schema).
FIRST_NORMAL_OBJECT_ID = 16384

# Built-ins (and extension functions) that run SQL given as text, reach files, programs,
# other servers or the server's state, or change settings: an expression the copy
# evaluates has no business calling them.
DENIED_BUILTINS = frozenset(
    {
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
        "ts_stat",
        "set_config",
        "nextval",
        "setval",
        "lo_import",
        "lo_export",
        "lo_create",
        "lo_creat",
        "lo_unlink",
        "lo_from_bytea",
        "lo_put",
        "lo_open",
        "lowrite",
        "lo_truncate",
        "lo_truncate64",
        "pg_read_file",
        "pg_read_binary_file",
        "pg_stat_file",
        "pg_ls_dir",
        "pg_ls_logdir",
        "pg_ls_waldir",
        "pg_ls_tmpdir",
        "pg_ls_archive_statusdir",
        "pg_ls_logicalsnapdir",
        "pg_ls_logicalmapdir",
        "pg_ls_replslotdir",
        "pg_file_write",
        "pg_file_rename",
        "pg_file_unlink",
        "pg_file_sync",
        "pg_logdir_ls",
        "pg_cancel_backend",
        "pg_terminate_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_promote",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_create_physical_replication_slot",
        "pg_create_logical_replication_slot",
        "pg_copy_physical_replication_slot",
        "pg_copy_logical_replication_slot",
        "pg_drop_replication_slot",
        "pg_replication_slot_advance",
        "pg_replication_origin_create",
        "pg_replication_origin_drop",
        "pg_replication_origin_advance",
        "pg_replication_origin_session_setup",
        "pg_logical_emit_message",
        "pg_notify",
        "pg_sleep",
        "pg_sleep_for",
        "pg_sleep_until",
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
        "pg_import_system_collations",
        "pg_stat_reset",
        "pg_stat_reset_shared",
        "pg_stat_reset_single_table_counters",
        "pg_stat_reset_single_function_counters",
        "pg_stat_reset_slru",
        "pg_stat_reset_replication_slot",
        "pg_stat_reset_subscription_stats",
    }
)
# Extensions whose every function reaches another server.
DENIED_PREFIXES = ("dblink",)

# Settings that change who later sessions on the target database are, or what they load.
DENIED_SETTINGS = frozenset(
    {
        "role",
        "session_authorization",
        "session_preload_libraries",
        "local_preload_libraries",
        "session_replication_role",
        "lo_compat_privileges",
        "default_transaction_read_only",
    }
)

# `evaluated`: what the copy or the replication evaluates on the target, as (what, catalog,
# oid), of the copied tables only where bound to a table. `reached`: the functions each of
# them calls, from what its expressions name (pg_depend), through views' queries, operators'
# functions and operator classes' support functions and operators.
_CALLED = """
WITH RECURSIVE evaluated(what, classid, objid) AS (
SELECT format('%%s (constraint %%I)', coalesce(c.conrelid::regclass::text, format_type(c.contypid, NULL)),
              c.conname),
       'pg_constraint'::regclass, c.oid
FROM pg_constraint c
WHERE c.conrelid = ANY(%(tables)s) OR c.contypid <> 0
UNION ALL
SELECT format('%%s (index %%s)', x.indrelid::regclass, x.indexrelid::regclass),
       'pg_class'::regclass, x.indexrelid
FROM pg_index x WHERE x.indrelid = ANY(%(tables)s)
UNION ALL
SELECT format('%%s (generated column %%I)', d.adrelid::regclass, a.attname), 'pg_attrdef'::regclass, d.oid
FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
WHERE a.attgenerated <> '' AND d.adrelid = ANY(%(tables)s)
UNION ALL
SELECT format('%%s (partition key)', p.partrelid::regclass), 'pg_class'::regclass, p.partrelid
FROM pg_partitioned_table p WHERE p.partrelid = ANY(%(tables)s)
UNION ALL
SELECT format('%%s (statistics %%I)', s.stxrelid::regclass, s.stxname), 'pg_statistic_ext'::regclass, s.oid
FROM pg_statistic_ext s WHERE s.stxrelid = ANY(%(tables)s)
UNION ALL
SELECT format('%%s (materialized view, refreshed by the copy)', v.oid::regclass), 'pg_class'::regclass, v.oid
FROM pg_class v WHERE v.relkind = 'm' AND %(matviews)s
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = v.oid
                  AND e.deptype = 'e')
UNION ALL
SELECT format('%%s (policy %%I, row-level security forced on the owner)', p.polrelid::regclass, p.polname),
       'pg_policy'::regclass, p.oid
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
WHERE c.relforcerowsecurity AND p.polrelid = ANY(%(tables)s)
UNION ALL
SELECT format('%%s (trigger %%I, ENABLE %%s: fires in the replication)', t.tgrelid::regclass, t.tgname,
              CASE t.tgenabled WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END),
       'pg_trigger'::regclass, t.oid
FROM pg_trigger t
WHERE %(with_sync)s AND t.tgenabled IN ('A', 'R') AND NOT t.tgisinternal AND t.tgrelid = ANY(%(tables)s)
UNION ALL
SELECT format('event trigger %%I (fires on the copy''s own statements)', e.evtname),
       'pg_event_trigger'::regclass, e.oid
FROM pg_event_trigger e WHERE e.evtenabled <> 'D'
),
reached(what, classid, objid) AS (
    SELECT what, classid, objid FROM evaluated
    UNION
    SELECT r.what, n.classid, n.objid
    FROM reached r
    CROSS JOIN LATERAL (
        SELECT d.refclassid AS classid, d.refobjid AS objid FROM pg_depend d
        WHERE d.classid = r.classid AND d.objid = r.objid AND d.deptype = 'n'
        UNION ALL
        SELECT 'pg_rewrite'::regclass, w.oid FROM pg_rewrite w JOIN pg_class v ON v.oid = w.ev_class
        WHERE r.classid = 'pg_class'::regclass AND w.ev_class = r.objid AND v.relkind IN ('v', 'm')
        UNION ALL
        SELECT 'pg_proc'::regclass, o.oprcode FROM pg_operator o
        WHERE r.classid = 'pg_operator'::regclass AND o.oid = r.objid
        UNION ALL
        SELECT 'pg_proc'::regclass, p.amproc
        FROM pg_opclass c JOIN pg_amproc p ON p.amprocfamily = c.opcfamily
        WHERE r.classid = 'pg_opclass'::regclass AND c.oid = r.objid
        UNION ALL
        SELECT 'pg_operator'::regclass, p.amopopr
        FROM pg_opclass c JOIN pg_amop p ON p.amopfamily = c.opcfamily
        WHERE r.classid = 'pg_opclass'::regclass AND c.oid = r.objid
    ) n
    WHERE r.classid <> 'pg_proc'::regclass
)
SELECT DISTINCT r.what, p.oid::regprocedure::text
FROM reached r JOIN pg_proc p ON r.classid = 'pg_proc'::regclass AND p.oid = r.objid
WHERE (p.oid >= %(first_normal)s
       AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid
                       AND e.deptype = 'e'))
   OR p.proname = ANY(%(denied)s) OR p.proname LIKE ANY(%(denied_prefixes)s)
ORDER BY 1, 2
"""

_SETTINGS = """
SELECT coalesce((SELECT s.setconfig FROM pg_db_role_setting s
                 WHERE s.setdatabase = d.oid AND s.setrole = 0), '{}')
FROM pg_database d WHERE d.datname = %s
"""

LISTED = 10
TRUST_HINT = (
    "set trust_source_code in the job's options if the source and everyone who can write to it are trusted"
)


def _search_path_puts_before_catalog(value: str) -> bool:
    """Whether a schema comes before pg_catalog: its functions would then hide the built-ins
    from the engine's own later sessions (an unnamed pg_catalog is searched first)."""
    schemas = [part.strip().strip('"') for part in value.split(",")]
    return "pg_catalog" in schemas and schemas[0] != "pg_catalog"


def denied_settings(settings: list[str]) -> list[str]:
    """The database settings (as pg_db_role_setting holds them) that are not applied untrusted."""
    denied = []
    for entry in settings:
        name, _, value = entry.partition("=")
        if name.lower() in DENIED_SETTINGS or (
            name.lower() == "search_path" and _search_path_puts_before_catalog(value)
        ):
            denied.append(name)
    return denied


def database_code(ctx: Context, database: str, *, with_sync: bool, copying: bool = True) -> list[str]:
    """What in `database` would run code of the source's on the target, one line each:
    during the copy (`copying`) and, `with_sync`, in the subscription's apply worker."""
    chosen, _ = ctx.tables(database)
    with connect(ctx.source, database) as src:
        src.execute("SET search_path = ''")  # names come back schema-qualified
        calls = src.execute(
            _CALLED,
            {
                "tables": [t.oid for t in chosen],
                "matviews": copying and not ctx.has_include_rules(database),
                "with_sync": with_sync,
                "first_normal": FIRST_NORMAL_OBJECT_ID,
                "denied": sorted(DENIED_BUILTINS),
                "denied_prefixes": [prefix + "%" for prefix in DENIED_PREFIXES],
            },
        ).fetchall()
    with connect(ctx.source) as src:
        row = src.execute(_SETTINGS, [database]).fetchone()
    found: dict[str, list[str]] = {}
    for what, function in calls:
        found.setdefault(what, []).append(function)
    lines = [f"{what} calls {', '.join(functions)}" for what, functions in found.items()]
    lines += [f"database setting {name}" for name in denied_settings(list(row[0]) if row else [])]
    return lines


def job_problems(ctx: Context, databases: list[str], *, with_sync: bool, copying: bool = True) -> list[str]:
    """One problem per database whose copy or replication would run the source's code; none
    with trust."""
    if ctx.options.trust_source_code:
        return []
    problems = []
    for database in databases:
        lines = database_code(ctx, database, with_sync=with_sync, copying=copying)
        if lines:
            more = f" and {len(lines) - LISTED} more" if len(lines) > LISTED else ""
            problems.append(
                f"{database}: the copy would run code from the source on the target with the target "
                f"user's rights: {'; '.join(lines[:LISTED])}{more}; {TRUST_HINT}"
            )
    return problems
