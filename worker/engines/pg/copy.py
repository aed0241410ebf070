"""Table data, copied in parallel: COPY TO on the source streamed into COPY FROM on the target.

Every worker reads under the same exported snapshot, so the copy is one consistent
point in time. Binary format when both servers have the same major version (faster,
no text parsing), text otherwise (portable across versions).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from psycopg import sql

from jobs.urls import ConnectionUrl
from worker.engines.pg.catalog import Table
from worker.engines.pg.tools import connect


def copy_one(
    source: ConnectionUrl,
    target: ConnectionUrl,
    database: str,
    snapshot: str,
    table: Table,
    binary: bool,
    on_bytes: Callable[[int], None],
    stop: threading.Event,
) -> None:
    fmt = sql.SQL("(FORMAT binary)" if binary else "(FORMAT text)")
    with (
        connect(source, database, autocommit=False) as src,
        connect(target, database, autocommit=False) as dst,
    ):
        src.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        src.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        with (
            src.cursor().copy(sql.SQL("COPY {} TO STDOUT {}").format(table.ident, fmt)) as out,
            dst.cursor().copy(sql.SQL("COPY {} FROM STDIN {}").format(table.ident, fmt)) as into,
        ):
            for chunk in out:
                if stop.is_set():
                    raise InterruptedError("copy stopped after another table failed")
                into.write(chunk)
                on_bytes(len(chunk))
        dst.commit()
        src.rollback()


def copy_tables(
    source: ConnectionUrl,
    target: ConnectionUrl,
    database: str,
    snapshot: str,
    tables: list[Table],
    *,
    workers: int,
    binary: bool,
    on_bytes: Callable[[int], None],
    on_table_done: Callable[[Table], None],
) -> None:
    """Copy `tables` (largest first) with `workers` parallel connections; the first error stops all."""
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="copy") as pool:
        futures = {
            pool.submit(copy_one, source, target, database, snapshot, t, binary, on_bytes, stop): t
            for t in tables
            if t.kind == "r"
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                error = future.exception()
                if error is not None:
                    stop.set()
                    for other in pending:
                        other.cancel()
                    raise error
                on_table_done(futures[future])
