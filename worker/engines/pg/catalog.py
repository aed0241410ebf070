"""Which databases and tables a job covers, resolved against the source catalog.

Rules (documented in README of the engine):
- databases: every non-template database that accepts connections, except the
  maintenance database `postgres` unless it is named in include_databases or in an
  include_tables entry; then include_databases (if any) and exclude_databases apply.
  When only include_tables is given, the databases it names are the selection.
- tables: `db.table` matches a table of that name in any schema of `db`,
  `db.schema.table` exactly one. In a database named by include_tables only those
  tables are copied; elsewhere all tables. exclude_tables always removes. A rule on a
  partitioned or inheritance parent applies to its partitions and children too
  (as pg_dump's --table-and-children).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from jobs.spec import JobFilter, name_parts

MAINTENANCE_DB = "postgres"


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    kind: str  # 'r' plain or partition, 'p' partitioned parent (no rows of its own)
    size: int
    oid: int = 0
    parents: tuple[int, ...] = ()  # pg_inherits: a partition's parent, an inheritance child's parents
    # UPDATE/DELETE of a published table without one fail on the source.
    has_replica_identity: bool = True
    text_only: bool = False  # a column's type has no portable binary form: COPY in text format
    # Row-level security would show the connected user only some rows (it cannot bypass it).
    rls_hides_rows: bool = False

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


def database_of(entry: str) -> str:
    """The database a filter entry names (`db`, `db.table`, `db.schema.table`, names maybe quoted)."""
    return name_parts(entry)[0]


def _databases(entries: list[str]) -> set[str]:
    return {database_of(entry) for entry in entries}


def _table_rules(entries: list[str], database: str) -> list[tuple[str | None, str]]:
    rules: list[tuple[str | None, str]] = []
    for entry in entries:
        parts = name_parts(entry)
        if parts[0] != database:
            continue
        rules.append((None, parts[1]) if len(parts) == 2 else (parts[1], parts[2]))
    return rules


def _matches(table: Table, rules: list[tuple[str | None, str]]) -> bool:
    return any(name == table.name and schema in (None, table.schema) for schema, name in rules)


def _family_matches(table: Table, rules: list[tuple[str | None, str]], by_oid: dict[int, Table]) -> bool:
    """The table or one of its ancestors matches: a parent brings its partitions and children."""
    seen: set[int] = set()
    pending = [table]
    while pending:
        current = pending.pop()
        if _matches(current, rules):
            return True
        seen.add(current.oid)
        pending += [by_oid[p] for p in current.parents if p in by_oid and p not in seen]
    return False


def select_databases(conn: psycopg.Connection, job_filter: JobFilter) -> list[str]:
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname"
    ).fetchall()
    available = [r[0] for r in rows]
    named_by_tables = _databases(job_filter.include_tables)
    if job_filter.include_databases:
        wanted = _databases(job_filter.include_databases) | named_by_tables
    elif named_by_tables:
        wanted = named_by_tables
    else:
        wanted = {d for d in available if d != MAINTENANCE_DB}
    return [d for d in available if d in wanted and d not in _databases(job_filter.exclude_databases)]


def missing_databases(conn: psycopg.Connection, job_filter: JobFilter) -> list[str]:
    """Databases the filter names explicitly that the source does not have."""
    rows = conn.execute("SELECT datname FROM pg_database").fetchall()
    present = {r[0] for r in rows}
    named = _databases(job_filter.include_databases) | _databases(job_filter.include_tables)
    return sorted(named - present)


def uncopyable_databases(conn: psycopg.Connection, job_filter: JobFilter) -> list[str]:
    """Databases the filter names explicitly that the copy would leave out, each with why."""
    named = _databases(job_filter.include_databases) | _databases(job_filter.include_tables)
    rows = conn.execute(
        "SELECT datname, datistemplate, datallowconn FROM pg_database WHERE datname = ANY(%s) "
        "AND (datistemplate OR NOT datallowconn) ORDER BY datname",
        [sorted(named - _databases(job_filter.exclude_databases))],
    ).fetchall()
    return [
        f"{name} ({'a template' if template else ''}{' that ' if template and not allow else ''}"
        f"{'does not accept connections' if not allow else ''})"
        for name, template, allow in rows
    ]


# Tables with a column whose type (or a type it is made of: domain base, array element,
# range subtype, composite attribute) has no binary send/receive, or is an object
# identifier type (regclass, regtype, ...: its binary form is the OID, which names another
# object or none on the target; its text form is the name): COPY must use text.
_TEXT_ONLY_TABLES = """
WITH RECURSIVE part(root, typ) AS (
    SELECT DISTINCT a.atttypid, a.atttypid FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
  UNION
    SELECT part.root, sub.typ FROM part JOIN pg_type t ON t.oid = part.typ
    CROSS JOIN LATERAL (
        SELECT t.typbasetype WHERE t.typtype = 'd'
        UNION ALL SELECT t.typelem WHERE t.typcategory = 'A' AND t.typelem <> 0
        UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid
        UNION ALL SELECT ca.atttypid FROM pg_attribute ca
            WHERE t.typtype = 'c' AND ca.attrelid = t.typrelid AND ca.attnum > 0 AND NOT ca.attisdropped
    ) AS sub(typ)
)
SELECT DISTINCT a.attrelid::int8 FROM pg_attribute a
WHERE a.attnum > 0 AND NOT a.attisdropped AND a.atttypid IN (
    SELECT part.root FROM part JOIN pg_type t ON t.oid = part.typ
    WHERE t.typsend = 0 OR t.typreceive = 0
       OR (t.typnamespace = 'pg_catalog'::regnamespace
           AND t.typname IN ('regclass', 'regcollation', 'regconfig', 'regdictionary', 'regnamespace',
                             'regoper', 'regoperator', 'regproc', 'regprocedure', 'regrole', 'regtype')))
"""


def list_tables(conn: psycopg.Connection) -> list[Table]:
    """User tables (not system, not owned by an extension), largest first."""
    text_only = {int(r[0]) for r in conn.execute(_TEXT_ONLY_TABLES)}
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname, c.relkind::text, pg_total_relation_size(c.oid), c.oid::int8,
               array(SELECT i.inhparent::int8 FROM pg_inherits i WHERE i.inhrelid = c.oid ORDER BY 1),
               c.relreplident IN ('f', 'i')
                   OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index x
                                                         WHERE x.indrelid = c.oid AND x.indisprimary)),
               c.relrowsecurity
                   AND NOT (SELECT r.rolsuper OR r.rolbypassrls FROM pg_roles r
                            WHERE r.rolname = current_user)
                   AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY pg_total_relation_size(c.oid) DESC, n.nspname, c.relname
        """
    ).fetchall()
    return [
        Table(r[0], r[1], r[2], int(r[3]), int(r[4]), tuple(r[5]), r[6], int(r[4]) in text_only, r[7])
        for r in rows
    ]


def select_tables(tables: list[Table], database: str, job_filter: JobFilter) -> tuple[list[Table], bool]:
    """The tables of `database` the job covers, and whether that is a subset (filters apply)."""
    include = _table_rules(job_filter.include_tables, database)
    exclude = _table_rules(job_filter.exclude_tables, database)
    by_oid = {t.oid: t for t in tables}
    chosen = [
        t
        for t in tables
        if (not include or _family_matches(t, include, by_oid)) and not _family_matches(t, exclude, by_oid)
    ]
    return chosen, bool(include or exclude)


# The first OID a user's object can have: anything below it was made by initdb.
FIRST_NORMAL_OID = sql.Literal(16384)

# The schemas a user's objects are in (`public` included): neither the system's nor a session's.
USER_SCHEMAS = sql.SQL(
    """
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema')
      AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%'
    """
)


def user_object_count(conn: psycopg.Connection) -> int:
    """How many user objects a database holds (0 means it is empty and may be filled).

    Relations, but also functions, types, extensions, schemas, any other object in `public`
    (operators, collations, text search objects...), casts and foreign-data wrappers made
    after initdb: a database holding only those is not empty, and the copy's own objects
    would collide with them. A retry empties a database this job found empty of all of them
    (`resume.empty_again`), so one the user had put there must make it not empty.
    """
    row = conn.execute(
        sql.SQL(
            """
        WITH user_schema AS ({})
        SELECT (SELECT count(*) FROM pg_class WHERE relnamespace IN (SELECT oid FROM user_schema)
                    AND relkind IN ('r', 'p', 'v', 'm', 'S', 'f'))
             + (SELECT count(*) FROM pg_proc WHERE pronamespace IN (SELECT oid FROM user_schema))
             + (SELECT count(*) FROM pg_type WHERE typnamespace IN (SELECT oid FROM user_schema)
                    AND typtype IN ('b', 'c', 'd', 'e', 'r', 'm') AND typrelid = 0
                    AND typcategory <> 'A')
             + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
             + (SELECT count(*) FROM pg_namespace WHERE oid IN (SELECT oid FROM user_schema)
                    AND nspname <> 'public')
             + (SELECT count(*) FROM pg_largeobject_metadata)
             + (SELECT count(*) FROM pg_depend WHERE refclassid = 'pg_namespace'::regclass
                    AND refobjid = (SELECT oid FROM pg_namespace WHERE nspname = 'public') AND deptype = 'n')
             + (SELECT count(*) FROM pg_cast WHERE oid >= {})
             + (SELECT count(*) FROM pg_foreign_data_wrapper)
        """
        ).format(USER_SCHEMAS, FIRST_NORMAL_OID)
    ).fetchone()
    return int(row[0]) if row else 0
