"""verify: per table, row count and an order-independent checksum of the rows, both sides."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from itertools import repeat

import psycopg
from psycopg import sql

from jobs.urls import ConnectionUrl
from worker.engines.pg.catalog import Table
from worker.engines.pg.context import Context
from worker.engines.pg.tools import EngineError, connect

_CHECKSUM = (
    "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0)::text "
    "FROM {} AS t"
)


def _checksum(url: ConnectionUrl, database: str, table: Table) -> tuple[int, str] | None:
    try:
        with connect(url, database) as conn:
            row = conn.execute(sql.SQL(_CHECKSUM).format(table.ident)).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    assert row is not None
    return int(row[0]), str(row[1])


def verify(ctx: Context) -> None:
    with connect(ctx.source) as src:
        databases = ctx.selected_databases(src)
    ctx.emit.progress(phase="verify", databases_total=len(databases), message="verifying")
    problems: list[str] = []
    checked = 0
    for index, database in enumerate(databases):
        chosen, _ = ctx.tables(database)
        leaves = [t for t in chosen if t.kind == "r"]
        ctx.emit.progress(current_database=database, tables_total=len(leaves), tables_completed=0)
        with ThreadPoolExecutor(max_workers=max(1, ctx.workers)) as pool:
            sources = list(pool.map(_checksum, repeat(ctx.source), repeat(database), leaves))
            try:
                targets = list(pool.map(_checksum, repeat(ctx.target), repeat(database), leaves))
            except psycopg.OperationalError as exc:
                raise EngineError(f"cannot connect to target database {database}") from exc
        for table, left, right in zip(leaves, sources, targets, strict=True):
            label = f"{database}.{table.label}"
            if right is None:
                problems.append(f"{label} (missing on target)")
            elif left is not None and left[0] != right[0]:
                problems.append(f"{label} (rows {left[0]} vs {right[0]})")
            elif left != right:
                problems.append(f"{label} (content differs)")
            checked += 1
        ctx.emit.progress(
            databases_completed=index + 1, tables_completed=len(leaves), message=f"verified {database}"
        )
    if problems:
        for problem in problems:
            ctx.emit.error(f"mismatch: {problem}")
        raise EngineError(f"verify found {len(problems)} mismatched tables: {', '.join(problems)}"[:900])
    message = f"verify passed: {checked} tables in {len(databases)} databases match"
    ctx.emit.progress(phase="done", current_database=None, percent=100.0, message=message)
    ctx.emit.info(message)
