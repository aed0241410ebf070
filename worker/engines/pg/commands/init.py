"""init: create each target database and copy its schema, data and sequences (then sync)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from worker.engines.pg import catalog
from worker.engines.pg.context import Context
from worker.engines.pg.database_copy import DatabaseCopy
from worker.engines.pg.replication import drop_slots, drop_subscriptions, subscribe
from worker.engines.pg.tools import EngineError, connect, find_tools, server_major


def init(ctx: Context) -> None:
    emit = ctx.emit
    with connect(ctx.source) as src, connect(ctx.target) as tgt:
        source_major, target_major = server_major(src), server_major(tgt)
        if target_major < source_major:
            raise EngineError(
                f"the target runs PostgreSQL {target_major}, older than the source ({source_major})"
            )
        tools = find_tools(source_major)
        databases = ctx.selected_databases(src)
        wal_level = src.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
        with_sync = ctx.options.enable_sync and wal_level == "logical"
        if ctx.options.enable_sync and not with_sync:
            emit.warn(
                f"source wal_level is {wal_level}, not logical: copying once without continuous sync "
                "(set wal_level = logical on the source and run sync later)"
            )
        emit.progress(phase="init", databases_total=len(databases), message=f"{len(databases)} databases")
        created_slots: list[tuple[str, str]] = []
        try:
            for index, database in enumerate(databases):
                prepare_target(ctx, tgt, src, database)
                DatabaseCopy(
                    ctx,
                    tools,
                    database,
                    with_sync=with_sync,
                    binary=source_major == target_major,
                    created_slots=created_slots,
                ).run()
                emit.progress(
                    databases_completed=index + 1,
                    percent=round(100 * (index + 1) / len(databases), 1),
                    message=f"copied database {database}",
                )
            if with_sync:
                for database in databases:
                    subscribe(ctx, database)
        except BaseException:
            drop_slots(ctx, created_slots)
            raise
    done = f"init completed: {len(databases)} databases"
    if ctx.options.enable_sync and not with_sync:
        done += f"; continuous sync NOT set up (source wal_level is {wal_level})"
    elif with_sync:
        done += "; continuous sync running"
    emit.progress(phase="done", percent=100.0, current_database=None, message=done)
    emit.info(done)


def prepare_target(ctx: Context, tgt: psycopg.Connection, src: psycopg.Connection, database: str) -> None:
    exists = tgt.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
    ident = sql.Identifier(database)
    if exists:
        if ctx.options.drop_existing:
            drop_subscriptions(ctx, database)
            tgt.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident))
            ctx.emit.info(f"dropped existing target database {database}")
        else:
            with connect(ctx.target, database) as conn:
                if catalog.user_relation_count(conn):
                    raise EngineError(
                        f"target database {database} already exists and is not empty; "
                        "submit with drop_existing to replace it"
                    )
            ctx.emit.info(f"target database {database} exists and is empty: filling it")
            return
    row = src.execute(
        "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = %s", [database]
    ).fetchone()
    encoding = row[0] if row else "UTF8"
    tgt.execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}").format(ident, sql.Literal(encoding))
    )
