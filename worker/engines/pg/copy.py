"""Table data, copied in parallel: `COPY TO STDOUT` on the source piped into `COPY FROM STDIN`.

Each table runs as two psql processes (credentials in their environment) joined by a
pump thread that only moves 1 MiB blocks and counts bytes: rows never pass through
Python one by one, which would cap throughput at the GIL. Every copy reads under the
same exported snapshot, so the tables are one consistent point in time. Binary format
when both servers have the same major version, text otherwise (portable across versions).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from psycopg import sql

from jobs.urls import ConnectionUrl
from worker.engines.pg.catalog import Table
from worker.engines.pg.tools import EngineError, Tools, tool_env

BLOCK = 1 << 20


def _psql(tools: Tools, *commands: str) -> list[str]:
    argv = [tools.path("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for command in commands:
        argv += ["-c", command]
    return argv


def copy_one(
    tools: Tools,
    source: ConnectionUrl,
    target: ConnectionUrl,
    database: str,
    snapshot: str,
    table: Table,
    binary: bool,
    on_bytes: Callable[[int], None],
    stop: threading.Event,
) -> None:
    name = table.ident.as_string(None)
    fmt = "(FORMAT binary)" if binary else "(FORMAT text)"
    reader_argv = _psql(
        tools,
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        f"SET TRANSACTION SNAPSHOT {sql.Literal(snapshot).as_string(None)}",
        f"COPY {name} TO STDOUT {fmt}",
        "COMMIT",
    )
    writer_argv = _psql(tools, f"COPY {name} FROM STDIN {fmt}")
    with (
        tempfile.TemporaryFile() as reader_err,
        tempfile.TemporaryFile() as writer_err,
        subprocess.Popen(
            reader_argv, stdout=subprocess.PIPE, stderr=reader_err, env=tool_env(source, database)
        ) as reader,
        subprocess.Popen(
            writer_argv, stdin=subprocess.PIPE, stderr=writer_err, env=tool_env(target, database)
        ) as writer,
    ):
        assert reader.stdout is not None and writer.stdin is not None
        source_fd, target_fd = reader.stdout.fileno(), writer.stdin.fileno()
        try:
            while not stop.is_set():
                block = os.read(source_fd, BLOCK)
                if not block:
                    break
                view = memoryview(block)
                while view:
                    view = view[os.write(target_fd, view) :]
                on_bytes(len(block))
        except BrokenPipeError:
            pass  # the writer died; its exit code and stderr say why
        finally:
            if stop.is_set():
                reader.kill()
                writer.kill()
            with contextlib.suppress(BrokenPipeError):
                writer.stdin.close()
        codes = reader.wait(), writer.wait()
        if stop.is_set():
            raise InterruptedError("copy stopped after another table failed")
        if any(codes):
            messages = []
            for err in (reader_err, writer_err):
                err.seek(0)
                messages += [
                    line for line in err.read().decode(errors="replace").splitlines() if line.strip()
                ]
            raise EngineError(f"copying {database}.{table.label} failed: {'; '.join(messages[-3:])}")


def copy_tables(
    tools: Tools,
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
    """Copy `tables` (largest first) `workers` at a time; the first error stops all."""
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="copy") as pool:
        futures = {
            pool.submit(copy_one, tools, source, target, database, snapshot, t, binary, on_bytes, stop): t
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
