"""ANALYZE of the copied tables on the target, `workers` at a time.

A restored database has no statistics until autovacuum gets to it, and autovacuum never
analyzes a partitioned parent: the first queries would be planned blind. Tables with rows
go first, largest first, one connection per worker; partitioned parents last (their
ANALYZE samples their partitions again, so they are not worth starting early).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg import sql

from jobs.urls import ConnectionUrl
from worker.engines.pg.catalog import Table
from worker.engines.pg.tools import connect


def analyze_tables(target: ConnectionUrl, database: str, tables: list[Table], workers: int) -> None:
    local = threading.local()
    opened: list[psycopg.Connection] = []
    lock = threading.Lock()

    def analyze(table: Table) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = connect(target, database)
            with lock:
                opened.append(conn)
        conn.execute(sql.SQL("ANALYZE {}").format(table.ident))

    leaves = sorted((t for t in tables if t.kind == "r"), key=lambda t: -t.size)
    parents = [t for t in tables if t.kind != "r"]
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="analyze") as pool:
            list(pool.map(analyze, leaves))
            list(pool.map(analyze, parents))
    finally:
        for conn in opened:
            conn.close()
