"""Table data, copied in parallel: `COPY TO STDOUT` on the source into `COPY FROM STDIN` on the target.

Every copy reads under the same exported snapshot, so the tables are one consistent point
in time. Binary format when both servers have the same major version and every column's
type has binary I/O that is not an OID (regclass, regtype, ...), text otherwise (portable
across versions). Reads run with `row_security = off`: a user whom a row-level security
policy would show only some rows gets an error, not a subset.

Two ways, by size:
- a large table runs as two psql processes (credentials in their environment) joined by
  one pipe: the data never passes through Python, which would cap throughput at the GIL
  and cost a copy of every byte; progress is what the reader has written so far, read
  from its /proc entry;
- a small table goes through the copy worker's own pair of connections (source in the
  snapshot, target), kept for all the small tables that worker copies: two processes and
  two logins per table would cost more than the table itself.

A table larger than the split threshold is cut into ranges of heap blocks (`ctid`), each
range a part copied like a table of its own, in parallel with the others and under the
same snapshot: every row version lives in exactly one block, so the ranges cover every
row exactly once, with or without a primary key. The last range is open-ended.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

import psycopg
from psycopg import sql

from jobs.urls import ConnectionUrl
from worker.engines.pg.catalog import Table
from worker.engines.pg.locks import lock_statements
from worker.engines.pg.tools import EngineError, Tools, connect, source_text, tool_env

# How often a large table's copy reports its progress.
PROGRESS_SECONDS = 0.5
# Below this (heap, indexes and TOAST together) a table goes through the worker's connections;
# tests lower it (in KiB) to send small tables down the large tables' path.
SMALL_TABLE_ENV = "PG_ENGINE_SMALL_TABLE_KB"
SMALL_TABLE_BYTES = int(os.environ.get(SMALL_TABLE_ENV) or 8 << 10) << 10
# TID range scans, which let a block range read only its own blocks, came with PostgreSQL 14.
SPLIT_MIN_MAJOR = 14


@dataclass(frozen=True)
class CopyPart:
    """A whole table, or the rows of heap blocks [first_block, end_block) of one (None: to the end)."""

    table: Table
    first_block: int = 0
    end_block: int | None = None
    # Named in every COPY, in the source's order: a column added to a parent after its child
    # existed, or a child attached with INHERIT, is at another position on the target, where
    # pg_dump puts the parent's columns first.
    columns: tuple[str, ...] = ()
    # What this part weighs, for largest-first scheduling.
    size: int = 0

    @property
    def is_range(self) -> bool:
        return self.first_block > 0 or self.end_block is not None

    @property
    def in_process(self) -> bool:
        return not self.is_range and self.table.size < SMALL_TABLE_BYTES

    def copy_out(self, fmt: str) -> sql.Composed:
        if not self.is_range:
            return sql.SQL("COPY {}{} TO STDOUT {}").format(
                self.table.ident, self._column_list(), sql.SQL(fmt)
            )
        predicate = sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({self.first_block},0)"))
        if self.end_block is not None:
            end = sql.SQL("ctid < {}::tid").format(sql.Literal(f"({self.end_block},0)"))
            predicate = sql.SQL(" AND ").join([predicate, end])
        # ONLY: an inheritance parent's own rows, as COPY of the table copies them.
        return sql.SQL("COPY (SELECT {} FROM ONLY {} WHERE {}) TO STDOUT {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in self.columns),
            self.table.ident,
            predicate,
            sql.SQL(fmt),
        )

    def copy_in(self, fmt: str) -> sql.Composed:
        return sql.SQL("COPY {}{} FROM STDIN {}").format(self.table.ident, self._column_list(), sql.SQL(fmt))

    def _column_list(self) -> sql.Composable:
        """` (a, b, c)`; nothing for a table without columns, whose rows COPY carries all the same."""
        if not self.columns:
            return sql.SQL("")
        return sql.SQL(" ({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in self.columns))


def snapshot_connection(
    url: ConnectionUrl, database: str, snapshot: str, *, lock: list[Table] | None = None
) -> psycopg.Connection:
    """A source connection whose transaction reads in `snapshot` (close it to end the transaction).

    `lock`: tables to lock first, NOWAIT (raising psycopg.errors.LockNotAvailable).
    """
    conn = connect(url, database, autocommit=False)
    try:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for statement in lock_statements(lock or [], nowait=True):
            conn.execute(statement)
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        # Rows a row-level security policy hides must fail the copy, not vanish from it.
        conn.execute("SET LOCAL row_security = off")
    except BaseException:
        conn.close()
        raise
    return conn


def plan_parts(conn: psycopg.Connection, tables: list[Table], split_bytes: int) -> list[CopyPart]:
    """The parts to copy, largest first: tables with rows, those over `split_bytes` in block ranges."""
    leaves = [t for t in tables if t.kind == "r"]
    # Columns COPY of the table would carry: not dropped, not generated (the target computes those).
    columns: dict[int, list[str]] = {}
    for oid, name in conn.execute(
        "SELECT attrelid::int8, attname FROM pg_attribute WHERE attrelid = ANY(%s) AND attnum > 0 "
        "AND NOT attisdropped AND attgenerated = '' ORDER BY attrelid, attnum",
        [[t.oid for t in leaves]],
    ):
        columns.setdefault(int(oid), []).append(name)

    def whole(table: Table) -> CopyPart:
        return CopyPart(table, columns=tuple(columns.get(table.oid, ())), size=table.size)

    big = [t for t in leaves if split_bytes > 0 and t.size > split_bytes]
    if not big or conn.info.server_version // 10000 < SPLIT_MIN_MAJOR:
        return sorted((whole(t) for t in leaves), key=lambda p: -p.size)
    block_size = int(conn.execute("SELECT current_setting('block_size')").fetchone()[0])  # type: ignore[index]
    heap_blocks: dict[int, int] = dict(
        conn.execute(
            "SELECT oid::int8, pg_relation_size(oid) / %s FROM pg_class WHERE oid = ANY(%s)",
            [block_size, [t.oid for t in big]],
        ).fetchall()
    )
    parts: list[CopyPart] = []
    for table in leaves:
        blocks = int(heap_blocks.get(table.oid, 0))
        count = min(blocks, -(-table.size // split_bytes)) if table in big else 1
        if count < 2 or not columns.get(table.oid):
            parts.append(whole(table))
            continue
        starts = [blocks * i // count for i in range(count)]
        ends: list[int | None] = [*starts[1:], None]
        parts += [
            CopyPart(table, first, end, tuple(columns[table.oid]), table.size // count)
            for first, end in zip(starts, ends, strict=True)
        ]
    return sorted(parts, key=lambda p: -p.size)


def _psql(tools: Tools, *commands: str) -> list[str]:
    argv = [tools.path("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for command in commands:
        argv += ["-c", command]
    return argv


@dataclass
class _Copier:
    tools: Tools
    source: ConnectionUrl
    target: ConnectionUrl
    database: str
    snapshot: str
    binary: bool
    on_bytes: Callable[[int], None]
    stop: threading.Event
    # The session that holds ACCESS SHARE on every table, in the snapshot: reads go through
    # it, one at a time, when a reader of its own would queue behind a waiting exclusive lock.
    holder: psycopg.Connection
    tables: list[Table]

    def __post_init__(self) -> None:
        self._local = threading.local()
        self._opened: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._holder_lock = threading.Lock()

    def copy(self, part: CopyPart) -> None:
        if self.stop.is_set():
            raise InterruptedError("copy stopped after another table failed")
        if part.in_process:
            self._copy_in_process(part)
        else:
            self._copy_through_psql(part)

    def _format(self, part: CopyPart) -> str:
        return "(FORMAT binary)" if self.binary and not part.table.text_only else "(FORMAT text)"

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()

    def _connections(self) -> tuple[psycopg.Connection | None, psycopg.Connection]:
        """This thread's source connection (in the snapshot, every table locked) and target connection.

        No source connection when a table's lock was refused: another session waits for an
        exclusive lock on it, and this thread reads through the holder instead.
        """
        pair = getattr(self._local, "pair", None)
        if pair is None:
            src: psycopg.Connection | None
            try:
                src = snapshot_connection(self.source, self.database, self.snapshot, lock=self.tables)
            except psycopg.errors.LockNotAvailable:
                src = None
            with self._lock:
                self._opened += [src] if src is not None else []
            dst = connect(self.target, self.database)
            with self._lock:
                self._opened.append(dst)
            pair = self._local.pair = (src, dst)
        return pair

    def _copy_in_process(self, part: CopyPart, *, through_holder: bool = False) -> None:
        src, dst = self._connections()
        if src is None or through_holder:
            with self._holder_lock:
                self._copy_between(self.holder, dst, part)
        else:
            self._copy_between(src, dst, part)

    def _copy_between(self, src: psycopg.Connection, dst: psycopg.Connection, part: CopyPart) -> None:
        copied = 0
        try:
            with (
                src.cursor().copy(part.copy_out(self._format(part))) as reader,
                dst.cursor().copy(part.copy_in(self._format(part))) as writer,
            ):
                for block in reader:
                    writer.write(block)
                    copied += len(block)
        except psycopg.Error as exc:
            raise EngineError(
                f"copying {self.database}.{part.table.label} failed: {source_text(str(exc))}"
            ) from exc
        self.on_bytes(copied)

    def _copy_through_psql(self, part: CopyPart) -> None:
        reader_argv = _psql(
            self.tools,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            *(statement.as_string(None) for statement in lock_statements([part.table], nowait=True)),
            f"SET TRANSACTION SNAPSHOT {sql.Literal(self.snapshot).as_string(None)}",
            "SET LOCAL row_security = off",
            part.copy_out(self._format(part)).as_string(None),
            "COMMIT",
        )
        writer_argv = _psql(self.tools, part.copy_in(self._format(part)).as_string(None))
        with (
            tempfile.TemporaryFile() as reader_err,
            tempfile.TemporaryFile() as writer_err,
            subprocess.Popen(
                reader_argv,
                stdout=subprocess.PIPE,
                stderr=reader_err,
                env=tool_env(self.source, self.database),
            ) as reader,
        ):
            assert reader.stdout is not None
            # One pipe from reader to writer: the data never passes through this process.
            with subprocess.Popen(
                writer_argv, stdin=reader.stdout, stderr=writer_err, env=tool_env(self.target, self.database)
            ) as writer:
                reader.stdout.close()  # the writer's end only: a dead writer makes the reader fail
                self._watch(reader, writer)
            codes = reader.wait(), writer.returncode
            if self.stop.is_set():
                raise InterruptedError("copy stopped after another table failed")
            if any(codes):
                messages = []
                for err in (reader_err, writer_err):
                    err.seek(0)
                    messages += [
                        line for line in err.read().decode(errors="replace").splitlines() if line.strip()
                    ]
                if codes[0] and any(_LOCK_REFUSED in line for line in messages):
                    # Refused before a row was read: the writer got nothing, and wrote nothing.
                    self._copy_in_process(part, through_holder=True)
                    return
                detail = source_text("; ".join(messages[-3:]))
                raise EngineError(f"copying {self.database}.{part.table.label} failed: {detail}")

    def _watch(self, reader: subprocess.Popen[bytes], writer: subprocess.Popen[bytes]) -> None:
        """Until the writer ends: report the bytes the reader wrote so far; kill both on stop."""
        reported = 0
        while True:
            ended = _wait_unreaped(writer.pid, PROGRESS_SECONDS)
            if self.stop.is_set():
                reader.kill()
                writer.kill()
                return
            written = _bytes_written(reader.pid)
            if written is not None and written > reported:
                self.on_bytes(written - reported)
                reported = written
            if ended:
                return


# psql's message when the reader's NOWAIT lock is refused.
_LOCK_REFUSED = "could not obtain lock on relation"


def _wait_unreaped(pid: int, timeout: float) -> bool:
    """Whether process `pid` ended within `timeout`; it stays a zombie (its /proc entry readable)."""
    deadline = time.monotonic() + timeout
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _bytes_written(pid: int) -> int | None:
    """What process `pid` wrote so far (its COPY data: stderr is a few bytes at most)."""
    try:
        with open(f"/proc/{pid}/io", "rb") as io:
            for line in io:
                if line.startswith(b"wchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def copy_tables(
    tools: Tools,
    source: ConnectionUrl,
    target: ConnectionUrl,
    database: str,
    snapshot: str,
    parts: list[CopyPart],
    *,
    workers: int,
    binary: bool,
    on_bytes: Callable[[int], None],
    on_table_done: Callable[[Table], None],
    holder: psycopg.Connection,
) -> None:
    """Copy `parts` in the order given, `workers` at a time; a table is done when all its parts are.

    `holder`: the source session in the snapshot that holds ACCESS SHARE on every table
    (`locks.py`). The first error stops all.
    """
    stop = threading.Event()
    tables = list({part.table: None for part in parts})
    copier = _Copier(tools, source, target, database, snapshot, binary, on_bytes, stop, holder, tables)
    remaining: dict[Table, int] = {}
    for part in parts:
        remaining[part.table] = remaining.get(part.table, 0) + 1
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="copy") as pool:
            futures = {pool.submit(copier.copy, part): part for part in parts}
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
                    table = futures[future].table
                    remaining[table] -= 1
                    if not remaining[table]:
                        on_table_done(table)
    finally:
        copier.close()
