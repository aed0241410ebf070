"""init: create each target database and copy its schema, data and sequences (then sync)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from worker.engines.pg import catalog, properties, resume, source_code
from worker.engines.pg.context import Context
from worker.engines.pg.database_copy import DatabaseCopy
from worker.engines.pg.preflight import job_problems
from worker.engines.pg.replication import drop_subscriptions, forget_source, subscribe
from worker.engines.pg.roles import copy_roles
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
                "(sync cannot start from this copy later: set wal_level = logical on the source "
                "and run init again with sync)"
            )
        problems = job_problems(ctx, databases, with_sync=with_sync)
        problems += source_code.job_problems(ctx, databases, with_sync=with_sync)
        if problems:
            raise EngineError("init refused: " + "; ".join(problems))
        if ctx.options.copy_roles:
            copy_roles(ctx, databases)
        emit.progress(phase="init", databases_total=len(databases), message=f"{len(databases)} databases")
        replicating: list[str] = []  # databases whose slot and publication this run made
        copying: str | None = None
        try:
            for index, database in enumerate(databases):
                copying = database
                key = resume.database_key(ctx, src, database)
                kept = resume.finished_earlier(ctx, src, database, key, with_sync=with_sync)
                if kept:
                    emit.info(f"database {database} was copied by an earlier attempt of this job: kept")
                else:
                    resume.start_copy(ctx, tgt, database, key)
                    prepare_target(ctx, tgt, src, database)
                if with_sync:
                    replicating.append(database)
                elif not kept:
                    # An earlier init's sync would have nothing to resume: its slot holds WAL for nothing.
                    forget_source(ctx, database)
                if not kept:
                    DatabaseCopy(
                        ctx, tools, database, with_sync=with_sync, binary=source_major == target_major
                    ).run()
                    resume.finish_copy(ctx, database, key)
                emit.progress(
                    databases_completed=index + 1,
                    percent=round(100 * (index + 1) / len(databases), 1),
                    message=f"{'kept' if kept else 'copied'} database {database}",
                )
            if with_sync:
                for database in databases:
                    subscribe(ctx, database)
        except BaseException as exc:
            if copying is not None:
                resume.drop_half_copy(ctx, copying, exc)
            for database in replicating:
                if not resume.kept_for_next_attempt(ctx, database, exc):
                    forget_source(ctx, database)
            raise
    done = f"init completed: {len(databases)} databases"
    if ctx.options.enable_sync and not with_sync:
        done += f"; continuous sync NOT set up (source wal_level is {wal_level})"
    elif with_sync:
        done += "; continuous sync running"
    emit.progress(phase="done", percent=100.0, current_database=None, message=done)
    emit.info(done)


def prepare_target(ctx: Context, tgt: psycopg.Connection, src: psycopg.Connection, database: str) -> None:
    """A new target database with the source's encoding and locale, or an empty one that has them."""
    wanted = properties.read(src, database)
    exists = tgt.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
    if exists and ctx.options.drop_existing:
        drop_subscriptions(ctx, database)
        tgt.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
        ctx.emit.info(f"dropped existing target database {database}")
    elif exists:
        with connect(ctx.target, database) as conn:
            if catalog.user_object_count(conn):
                raise EngineError(
                    f"target database {database} already exists and is not empty; "
                    "submit with drop_existing to replace it"
                )
        have = properties.read(tgt, database)
        if have.locale_summary != wanted.locale_summary:
            raise EngineError(
                f"target database {database} exists with {have.locale_summary}, the source's has "
                f"{wanted.locale_summary}; submit with drop_existing to recreate it"
            )
        ctx.emit.info(f"target database {database} exists and is empty: filling it")
        resume.filling_existing(ctx, tgt, database)
        return
    properties.create_database(tgt, database, wanted)
