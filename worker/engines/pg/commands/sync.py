"""sync: a subscription per target database to the source's publication."""

from __future__ import annotations

from worker.engines.pg import source_code
from worker.engines.pg.context import Context
from worker.engines.pg.replication import subscribe
from worker.engines.pg.tools import EngineError, connect


def sync(ctx: Context) -> None:
    with connect(ctx.source) as src:
        wal_level = src.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
        if wal_level != "logical":
            raise EngineError(f"the source's wal_level is {wal_level}; sync needs wal_level = logical")
        databases = ctx.selected_databases(src)
    # The apply worker evaluates checks, index expressions and ENABLE ALWAYS/REPLICA triggers
    # for every row it writes, with the subscription owner's rights.
    problems = source_code.job_problems(ctx, databases, with_sync=True, copying=False)
    if problems:
        raise EngineError("sync refused: " + "; ".join(problems))
    ctx.emit.progress(phase="sync", databases_total=len(databases), message="setting up continuous sync")
    for index, database in enumerate(databases):
        ctx.emit.progress(current_database=database, message=f"setting up sync of {database}")
        subscribe(ctx, database)
        ctx.emit.progress(databases_completed=index + 1)
    ctx.emit.progress(
        phase="done",
        current_database=None,
        percent=100.0,
        message=f"continuous sync running for {len(databases)} databases",
    )
