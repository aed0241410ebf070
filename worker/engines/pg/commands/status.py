"""status: per database, the subscription's state, the slot's activity and the lag in bytes."""

from __future__ import annotations

import psycopg

from worker.engines.pg.context import Context
from worker.engines.pg.replication import replication_name
from worker.engines.pg.tools import connect


def status(ctx: Context) -> None:
    with connect(ctx.source) as src:
        databases = ctx.selected_databases(src)
    reports = []
    for database in databases:
        name = replication_name(database, ctx.target)
        with connect(ctx.source, database) as src:
            slot = src.execute(
                "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
                "FROM pg_replication_slots WHERE slot_name = %s",
                [name],
            ).fetchone()
        try:
            with connect(ctx.target, database) as dst:
                sub = dst.execute(
                    "SELECT s.subenabled, st.last_msg_receipt_time "
                    "FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                    "LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL "
                    "WHERE d.datname = current_database() AND s.subname = %s",
                    [name],
                ).fetchone()
        except psycopg.OperationalError:
            sub = None
        if sub is None:
            state = "not replicating"
        else:
            state = "streaming" if sub[0] and slot and slot[0] else ("disabled" if not sub[0] else "waiting")
            if slot is not None:
                state += f", lag {slot[1] or 0} bytes"
        reports.append(f"{database}: {state}")
        ctx.emit.info(f"status {database}: {state}")
    ctx.emit.progress(
        phase="done",
        databases_total=len(databases),
        databases_completed=len(databases),
        message="; ".join(reports),
    )
