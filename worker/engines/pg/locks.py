"""ACCESS SHARE on every table a database's copy reads, held for the whole copy, as pg_dump does.

`TRUNCATE`, `ALTER TABLE ... TYPE`, `SET UNLOGGED`/`LOGGED`, `VACUUM FULL` and `CLUSTER`
write a new file for the table, and a transaction whose snapshot is older than theirs
reads it empty. Holding ACCESS SHARE from before the snapshot makes them wait until the
copy is done. One `LOCK TABLE` statement per batch of tables, with `lock_timeout`: a
table another session holds exclusively fails the copy, named, instead of hanging.

A request that waits queues every later one on that table behind it, the copy's own
readers included: a reader in another session therefore asks `NOWAIT`, and when refused
reads through the session that holds the locks (`copy.py`).
"""

from __future__ import annotations

import os

import psycopg
from psycopg import sql

from worker.engines.pg.catalog import Table
from worker.engines.pg.tools import EngineError

LOCK_TIMEOUT_ENV = "PG_ENGINE_LOCK_TIMEOUT_SECONDS"
DEFAULT_LOCK_TIMEOUT_SECONDS = 60
# Tables per LOCK TABLE statement.
LOCK_BATCH = 1000


def lock_timeout_seconds() -> int:
    return max(1, int(os.environ.get(LOCK_TIMEOUT_ENV) or DEFAULT_LOCK_TIMEOUT_SECONDS))


def lock_statements(tables: list[Table], *, nowait: bool = False) -> list[sql.Composed]:
    """`LOCK TABLE ONLY a, b, ... IN ACCESS SHARE MODE`, one per batch (ONLY: each table is listed)."""
    return [
        sql.SQL("LOCK TABLE ONLY {} IN ACCESS SHARE MODE{}").format(
            sql.SQL(", ").join(t.ident for t in tables[start : start + LOCK_BATCH]),
            sql.SQL(" NOWAIT" if nowait else ""),
        )
        for start in range(0, len(tables), LOCK_BATCH)
    ]


def lock_timeout_setting(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{lock_timeout_seconds()}s")))


def lock_tables(conn: psycopg.Connection, tables: list[Table], database: str) -> None:
    """Lock `tables` in `conn`'s open transaction, waiting at most the lock timeout."""
    timeout = lock_timeout_seconds()
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{timeout}s")))
    try:
        for statement in lock_statements(tables):
            conn.execute(statement)
    except psycopg.errors.LockNotAvailable:
        conn.rollback()
        raise EngineError(
            f"could not lock the tables of {database} within {timeout} s: {exclusive_holders(conn, tables)} "
            "(ALTER TABLE, TRUNCATE, VACUUM FULL, CLUSTER, LOCK...), and the copy must keep them from "
            f"changing while it reads them; retry once it is done, or raise {LOCK_TIMEOUT_ENV}"
        ) from None
    conn.execute("SET LOCAL lock_timeout = 0")


def exclusive_holders(conn: psycopg.Connection, tables: list[Table] | None = None) -> str:
    """Which of `tables` (None: any) another session holds, or waits for, in ACCESS EXCLUSIVE mode."""
    rows = conn.execute(
        "SELECT DISTINCT n.nspname || '.' || c.relname, l.granted FROM pg_locks l "
        "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid() "
        "AND (%s::oid[] IS NULL OR l.relation = ANY(%s::oid[])) ORDER BY 1",
        [None if tables is None else [t.oid for t in tables]] * 2,
    ).fetchall()
    if not rows:
        return "another session holds or waits for an exclusive lock on one of them"
    return "; ".join(
        f"another session {'holds' if granted else 'waits for'} an exclusive lock on {name}"
        for name, granted in rows
    )
