"""What makes a copy of one database impossible or unfaithful, found before anything is copied.

`validate` reports these; `init` refuses to start when any is found, instead of failing
after the data is in (or, worse, succeeding with rows missing).
"""

from __future__ import annotations

from worker.engines.pg import fit
from worker.engines.pg.catalog import Table
from worker.engines.pg.context import Context
from worker.engines.pg.tools import connect

# Objects (views, matviews, foreign keys, column types, trigger functions) that the
# copied tables need or that need an excluded table, as "what (kind) -> what it needs".
_DEPENDENTS_OF_EXCLUDED = """
SELECT DISTINCT format('%%s (%%s) uses %%s', v.oid::regclass,
       CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, d.refobjid::regclass)
FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class
WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY(%(excluded)s) AND v.oid <> d.refobjid
UNION
SELECT format('%%s (foreign key %%I) references %%s', c.conrelid::regclass, c.conname, c.confrelid::regclass)
FROM pg_constraint c
WHERE c.contype = 'f' AND c.confrelid = ANY(%(excluded)s) AND c.conrelid = ANY(%(chosen)s)
ORDER BY 1
"""

_NEEDS_OF_INCLUDED = """
SELECT DISTINCT format('%%s uses type %%s', a.attrelid::regclass, format_type(a.atttypid, NULL))
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE a.attrelid = ANY(%(chosen)s) AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT (t.typrelid <> 0 AND t.typrelid = ANY(%(chosen)s))
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_type'::regclass AND e.objid = t.oid
                  AND e.deptype = 'e')
UNION
SELECT format('%%s (trigger %%I) calls %%s()', g.tgrelid::regclass, g.tgname, g.tgfoid::regproc)
FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE g.tgrelid = ANY(%(chosen)s) AND NOT g.tgisinternal AND n.nspname <> 'pg_catalog'
UNION
SELECT format('%%s (foreign key %%I) references %%s', c.conrelid::regclass, c.conname, c.confrelid::regclass)
FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid = ANY(%(chosen)s)
  AND NOT c.confrelid = ANY(%(chosen)s)
ORDER BY 1
"""

_POLICY_ROLES = """
SELECT DISTINCT r.rolname FROM pg_policy p JOIN pg_roles r ON r.oid = ANY(p.polroles)
WHERE p.polrelid = ANY(%s) ORDER BY 1
"""

LISTED = 5


def _listing(items: list[str]) -> str:
    more = f" and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return ", ".join(items[:LISTED]) + more


def database_problems(
    ctx: Context, database: str, chosen: list[Table], excluded: list[Table], *, with_sync: bool
) -> list[str]:
    """Why copying `database` as the job asks would fail or lose data; empty when it would not."""
    problems: list[str] = []
    hidden = [f"{database}.{t.label}" for t in chosen if t.rls_hides_rows]
    if hidden:
        problems.append(
            f"row-level security would hide rows of {_listing(hidden)} from the source user: "
            "connect as the tables' owner, a superuser or a role with BYPASSRLS"
        )
    if with_sync:
        no_identity = [
            f"{database}.{t.label}" for t in chosen if t.kind == "r" and not t.has_replica_identity
        ]
        if no_identity:
            problems.append(
                f"{_listing(no_identity)} have no primary key or REPLICA IDENTITY: once published, "
                "UPDATE and DELETE on them would fail on the source; add a primary key or run "
                "ALTER TABLE ... REPLICA IDENTITY FULL, exclude them, or submit without sync"
            )
    oids = {"chosen": [t.oid for t in chosen], "excluded": [t.oid for t in excluded]}
    with connect(ctx.source, database) as src:
        src.execute("SET search_path = ''")  # names come back schema-qualified
        needs: list[str] = []
        if excluded and not ctx.has_include_rules(database):
            needs = [r[0] for r in src.execute(_DEPENDENTS_OF_EXCLUDED, oids)]
        elif ctx.has_include_rules(database):
            needs = [r[0] for r in src.execute(_NEEDS_OF_INCLUDED, oids)]
        roles = [r[0] for r in src.execute(_POLICY_ROLES, [oids["chosen"]])]
    if needs:
        problems.append(f"the table filter of {database} leaves out what is needed: {_listing(needs)}")
    if roles and not ctx.options.copy_roles:
        with connect(ctx.target) as tgt:
            present = {
                r[0] for r in tgt.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [roles])
            }
        missing = [r for r in roles if r not in present]
        if missing:
            problems.append(
                f"policies in {database} name roles the target lacks: {_listing(missing)} "
                "(create them on the target first, or submit with copy_roles)"
            )
    return problems


def job_problems(ctx: Context, databases: list[str], *, with_sync: bool) -> list[str]:
    problems: list[str] = []
    for database in databases:
        chosen, excluded = ctx.tables(database)
        problems += database_problems(ctx, database, chosen, excluded, with_sync=with_sync)
    return problems + fit.job_problems(ctx, databases, with_sync=with_sync)
