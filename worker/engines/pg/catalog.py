"""Which databases and tables a job covers, resolved against the source catalog.

Rules (documented in README of the engine):
- databases: every non-template database that accepts connections, except the
  maintenance database `postgres` unless it is named in include_databases or in an
  include_tables entry; then include_databases (if any) and exclude_databases apply.
  When only include_tables is given, the databases it names are the selection.
- tables: `db.table` matches a table of that name in any schema of `db`,
  `db.schema.table` exactly one. In a database named by include_tables only those
  tables are copied; elsewhere all tables. exclude_tables always removes.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from jobs.spec import JobFilter

MAINTENANCE_DB = "postgres"


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    kind: str  # 'r' plain or partition, 'p' partitioned parent (no rows of its own)
    size: int
    oid: int = 0

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


def _table_rules(entries: list[str], database: str) -> list[tuple[str | None, str]]:
    rules: list[tuple[str | None, str]] = []
    for entry in entries:
        parts = entry.split(".")
        if parts[0] != database:
            continue
        rules.append((None, parts[1]) if len(parts) == 2 else (parts[1], parts[2]))
    return rules


def _matches(table: Table, rules: list[tuple[str | None, str]]) -> bool:
    return any(name == table.name and schema in (None, table.schema) for schema, name in rules)


def select_databases(conn: psycopg.Connection, job_filter: JobFilter) -> list[str]:
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname"
    ).fetchall()
    available = [r[0] for r in rows]
    named_by_tables = {entry.split(".")[0] for entry in job_filter.include_tables}
    if job_filter.include_databases:
        wanted = set(job_filter.include_databases) | named_by_tables
    elif named_by_tables:
        wanted = named_by_tables
    else:
        wanted = {d for d in available if d != MAINTENANCE_DB}
    return [d for d in available if d in wanted and d not in set(job_filter.exclude_databases)]


def missing_databases(conn: psycopg.Connection, job_filter: JobFilter) -> list[str]:
    """Databases the filter names explicitly that the source does not have."""
    rows = conn.execute("SELECT datname FROM pg_database").fetchall()
    present = {r[0] for r in rows}
    named = set(job_filter.include_databases) | {e.split(".")[0] for e in job_filter.include_tables}
    return sorted(named - present)


def list_tables(conn: psycopg.Connection) -> list[Table]:
    """User tables (not system, not owned by an extension), largest first."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname, c.relkind::text, pg_total_relation_size(c.oid), c.oid::int8
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY pg_total_relation_size(c.oid) DESC, n.nspname, c.relname
        """
    ).fetchall()
    return [Table(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows]


def select_tables(tables: list[Table], database: str, job_filter: JobFilter) -> tuple[list[Table], bool]:
    """The tables of `database` the job covers, and whether that is a subset (filters apply)."""
    include = _table_rules(job_filter.include_tables, database)
    exclude = _table_rules(job_filter.exclude_tables, database)
    chosen = [t for t in tables if (not include or _matches(t, include)) and not _matches(t, exclude)]
    return chosen, bool(include or exclude)


def user_relation_count(conn: psycopg.Connection) -> int:
    """How many user relations a database holds (0 means it is empty and may be filled)."""
    row = conn.execute(
        """
        SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%'
        """
    ).fetchone()
    return int(row[0]) if row else 0
