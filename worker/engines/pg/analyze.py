"""ANALYZE of the copied tables on the target, so that it plans well from its first query.

A restored database has no statistics until autovacuum gets to it, and autovacuum never
analyzes a partitioned parent. A table whose indexes are built while other tables still
copy is analyzed right after them, in the same thread (ANALYZE and CREATE INDEX lock each
other out, and its pages are still in the target's cache); the rest are analyzed at the
end, `workers` at a time, partitioned parents last (their ANALYZE samples their
partitions again). What it cost is reported: the time spent in ANALYZE in all, and how
much of it came after everything else was done.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg import sql

from jobs.urls import ConnectionUrl
from worker.engines.pg.catalog import Table
from worker.engines.pg.tools import connect


class Analyzer:
    def __init__(self, target: ConnectionUrl, database: str, workers: int) -> None:
        self.target = target
        self.database = database
        self.workers = max(1, workers)
        self.analyzed: set[Table] = set()
        self.seconds = 0.0
        self._local = threading.local()
        self._opened: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    def analyze(self, table: Table) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.target, self.database)
            with self._lock:
                self._opened.append(conn)
        started = time.monotonic()
        conn.execute(sql.SQL("ANALYZE {}").format(table.ident))
        with self._lock:
            self.seconds += time.monotonic() - started
            self.analyzed.add(table)

    def analyze_rest(self, tables: list[Table]) -> None:
        """Every table of `tables` not analyzed yet: leaves largest first, then partitioned parents."""
        rest = [t for t in tables if t not in self.analyzed]
        leaves = sorted((t for t in rest if t.kind == "r"), key=lambda t: -t.size)
        parents = [t for t in rest if t.kind != "r"]
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="analyze") as pool:
            list(pool.map(self.analyze, leaves))
            list(pool.map(self.analyze, parents))

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
