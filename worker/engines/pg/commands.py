"""The pg engine's commands: init, verify, validate, sync, status.

Each raises `EngineError` with a message fit for the job's error; nothing here prints a
credential (the emitter redacts as a second line of defence).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import psycopg
from psycopg import sql

from jobs.spec import Command, JobFilter, JobOptions
from jobs.urls import ConnectionUrl
from worker.engines.pg import catalog
from worker.engines.pg.catalog import Table
from worker.engines.pg.copy import copy_tables
from worker.engines.pg.events import Emitter
from worker.engines.pg.postdata import PostData
from worker.engines.pg.tools import (
    EngineError,
    Tools,
    connect,
    conninfo,
    find_tools,
    quote_pattern,
    replication_connection,
    run_pipeline,
    server_major,
    tool_env,
)

PUBLICATION = "seren_replication"
WORKERS_ENV = "PG_ENGINE_JOBS"
SLOT_RELEASE_SECONDS = 15


def default_workers() -> int:
    if os.environ.get(WORKERS_ENV):
        return max(1, int(os.environ[WORKERS_ENV]))
    # Copies wait on I/O at both ends: twice the cores keeps both servers busy.
    return min(8, max(2, 2 * (os.cpu_count() or 1)))


@dataclass
class Context:
    source: ConnectionUrl
    target: ConnectionUrl
    job_filter: JobFilter
    options: JobOptions
    emit: Emitter
    workers: int = field(default_factory=default_workers)


def replication_name(database: str, target: ConnectionUrl) -> str:
    """Slot and subscription name: per database and per target, valid as a slot name."""
    digest = hashlib.sha256(f"{target.host}:{target.port}/{database}".encode()).hexdigest()[:10]
    return f"seren_{re.sub(r'[^a-z0-9_]', '_', database.lower())[:40]}_{digest}"


def run(command: Command, ctx: Context) -> None:
    handlers = {
        Command.INIT: init,
        Command.VERIFY: verify,
        Command.VALIDATE: validate,
        Command.SYNC: sync,
        Command.STATUS: status,
    }
    handlers[command](ctx)


# ---- shared steps ---------------------------------------------------------------------


def _selected_databases(ctx: Context, src: psycopg.Connection) -> list[str]:
    missing = catalog.missing_databases(src, ctx.job_filter)
    if missing:
        raise EngineError(f"the source has no database named {', '.join(missing)}")
    databases = catalog.select_databases(src, ctx.job_filter)
    if not databases:
        raise EngineError("no source database matches the job's filter")
    return databases


def _tables(ctx: Context, database: str) -> tuple[list[Table], list[Table]]:
    """(chosen, excluded) tables of `database` on the source."""
    with connect(ctx.source, database) as conn:
        every = catalog.list_tables(conn)
    chosen, _ = catalog.select_tables(every, database, ctx.job_filter)
    return chosen, [t for t in every if t not in chosen]


def _has_include_rules(ctx: Context, database: str) -> bool:
    return any(entry.split(".")[0] == database for entry in ctx.job_filter.include_tables)


def _dump_args(ctx: Context, database: str, chosen: list[Table], excluded: list[Table]) -> list[str]:
    if _has_include_rules(ctx, database):
        return [arg for t in chosen for arg in ("-t", quote_pattern(t.schema, t.name))]
    return [arg for t in excluded for arg in ("-T", quote_pattern(t.schema, t.name))]


def _wait_and_drop_slot(src: psycopg.Connection, name: str) -> None:
    deadline = time.monotonic() + SLOT_RELEASE_SECONDS
    while True:
        row = src.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", [name]).fetchone()
        if row is None:
            return
        if not row[0]:
            src.execute("SELECT pg_drop_replication_slot(%s)", [name])
            return
        if time.monotonic() > deadline:
            raise EngineError(f"replication slot {name} on the source is in use by another replication")
        time.sleep(0.5)


def _ensure_publication(src: psycopg.Connection, ctx: Context, database: str, chosen: list[Table]) -> bool:
    """Create or update the publication in one source database; False if it would be empty."""
    subset = _has_include_rules(ctx, database) or any(
        entry.split(".")[0] == database for entry in ctx.job_filter.exclude_tables
    )
    row = src.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s", [PUBLICATION]).fetchone()
    pub = sql.Identifier(PUBLICATION)
    if not subset:
        if row is not None and not row[0]:
            src.execute(sql.SQL("DROP PUBLICATION {}").format(pub))
        if row is None or not row[0]:
            src.execute(sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(pub))
        return True
    if not chosen:
        return False
    tables = sql.SQL(", ").join(t.ident for t in chosen)
    if row is not None and row[0]:
        src.execute(sql.SQL("DROP PUBLICATION {}").format(pub))
        row = None
    verb = "CREATE PUBLICATION {} FOR TABLE {}" if row is None else "ALTER PUBLICATION {} SET TABLE {}"
    src.execute(sql.SQL(verb).format(pub, tables))
    return True


def _drop_subscriptions(ctx: Context, database: str) -> None:
    """Subscriptions hold a database open and a slot on the source: release both before a drop."""
    with connect(ctx.target, database) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                "WHERE d.datname = current_database()"
            ).fetchall()
        ]
        for name in names:
            ident = sql.Identifier(name)
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
            conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
            ctx.emit.info(f"dropped subscription {name} in target database {database}")


def _prepare_target(ctx: Context, tgt: psycopg.Connection, src: psycopg.Connection, database: str) -> None:
    exists = tgt.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
    ident = sql.Identifier(database)
    if exists:
        if ctx.options.drop_existing:
            _drop_subscriptions(ctx, database)
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


def _copy_sequences(ctx: Context, database: str) -> int:
    query = "SELECT schemaname, sequencename, last_value FROM pg_sequences"
    with connect(ctx.source, database) as src, connect(ctx.target, database) as dst:
        values = {(r[0], r[1]): r[2] for r in src.execute(query).fetchall()}
        present = [(r[0], r[1]) for r in dst.execute(query).fetchall()]
        count = 0
        for key in present:
            if values.get(key) is not None:
                name = f"{sql.Identifier(*key).as_string(dst)}"
                dst.execute("SELECT setval(%s::regclass, %s, true)", [name, values[key]])
                count += 1
    return count


# ---- init -------------------------------------------------------------------------------


def init(ctx: Context) -> None:
    emit = ctx.emit
    with connect(ctx.source) as src, connect(ctx.target) as tgt:
        source_major, target_major = server_major(src), server_major(tgt)
        if target_major < source_major:
            raise EngineError(
                f"the target runs PostgreSQL {target_major}, older than the source ({source_major})"
            )
        tools = find_tools(source_major)
        databases = _selected_databases(ctx, src)
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
                _prepare_target(ctx, tgt, src, database)
                _init_database(ctx, tools, database, with_sync, source_major == target_major, created_slots)
                emit.progress(
                    databases_completed=index + 1,
                    percent=round(100 * (index + 1) / len(databases), 1),
                    message=f"copied database {database}",
                )
            if with_sync:
                for database in databases:
                    _sync_database(ctx, database)
        except BaseException:
            _drop_slots(ctx, created_slots)
            raise
    done = f"init completed: {len(databases)} databases"
    if ctx.options.enable_sync and not with_sync:
        done += f"; continuous sync NOT set up (source wal_level is {wal_level})"
    elif with_sync:
        done += "; continuous sync running"
    emit.progress(phase="done", percent=100.0, current_database=None, message=done)
    emit.info(done)


def _drop_slots(ctx: Context, slots: list[tuple[str, str]]) -> None:
    """After a failed init, drop the slots it made: an unused slot keeps WAL on the source forever."""
    for database, name in slots:
        try:
            with connect(ctx.source, database) as src:
                src.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s AND NOT active",
                    [name],
                )
        except psycopg.Error as exc:
            ctx.emit.warn(f"could not drop replication slot {name}: {exc}")


def _init_database(
    ctx: Context,
    tools: Tools,
    database: str,
    with_sync: bool,
    binary: bool,
    created_slots: list[tuple[str, str]],
) -> None:
    emit = ctx.emit
    chosen, excluded = _tables(ctx, database)
    total_bytes = sum(t.size for t in chosen) or 1
    done_before = emit.state["databases_completed"]
    databases_total = emit.state["databases_total"] or 1
    start_bytes = emit.state["bytes_copied"]
    emit.progress(
        phase="schema",
        current_database=database,
        tables_completed=0,
        tables_total=len([t for t in chosen if t.kind == "r"]),
        message=f"creating schema of {database}",
    )
    holder: psycopg.Connection
    if with_sync:
        name = replication_name(database, ctx.target)
        with connect(ctx.source, database) as src:
            _ensure_publication(src, ctx, database, chosen)
            _wait_and_drop_slot(src, name)
        # The slot's exported snapshot is the copy's point in time: sync resumes exactly after it.
        holder = replication_connection(ctx.source, database)
        result = holder.pgconn.exec_(
            f"CREATE_REPLICATION_SLOT \"{name}\" LOGICAL pgoutput (SNAPSHOT 'export')".encode()
        )
        if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
            holder.close()
            raise EngineError(f"creating replication slot failed: {result.error_message.decode().strip()}")
        created_slots.append((database, name))
        snapshot = (result.get_value(0, 2) or b"").decode()
    else:
        holder = connect(ctx.source, database, autocommit=False)
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = str(holder.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
    source_env = tool_env(ctx.source, database)
    target_env = tool_env(ctx.target, database)
    dump = [
        tools.path("pg_dump"),
        f"--snapshot={snapshot}",
        "-Fc",
        *_dump_args(ctx, database, chosen, excluded),
    ]
    restore = [tools.path("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error", "-d", database]
    try:
        if _has_include_rules(ctx, database):
            # pg_dump -t leaves out the schemas of the tables it dumps.
            with connect(ctx.target, database) as dst:
                for schema in sorted({t.schema for t in chosen}):
                    dst.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        run_pipeline(
            [
                ([*dump, "--section=pre-data", "--no-publications", "--no-subscriptions"], source_env),
                (restore, target_env),
            ],
            f"schema of {database}",
            emit,
        )
        with tempfile.TemporaryDirectory(prefix="pg-engine-") as tmp:
            archive = Path(tmp) / "post-data.dump"
            post_dump = [
                *dump,
                "--section=post-data",
                "--no-publications",
                "--no-subscriptions",
                "-f",
                str(archive),
            ]
            run_pipeline([(post_dump, source_env)], f"dumping indexes and constraints of {database}", emit)
            post = PostData(archive, restore, target_env, ctx.workers, emit)
            with connect(ctx.source, database) as src:
                post.plan(src, chosen)
            emit.progress(phase="copy", message=f"copying {len(chosen)} tables of {database}")

            def on_bytes(count: int) -> None:
                emit.add_bytes(count)
                fraction = min(0.99, (emit.state["bytes_copied"] - start_bytes) / total_bytes)
                emit.progress(force=False, percent=round(100 * (done_before + fraction) / databases_total, 1))

            def on_table_done(table: Table) -> None:
                post.table_done(table)
                emit.progress(
                    tables_completed=emit.state["tables_completed"] + 1,
                    message=f"copied {database}.{table.label}",
                )

            try:
                copy_tables(
                    tools,
                    ctx.source,
                    ctx.target,
                    database,
                    snapshot,
                    chosen,
                    workers=ctx.workers,
                    binary=binary,
                    on_bytes=on_bytes,
                    on_table_done=on_table_done,
                )
            except BaseException:
                post.abandon()
                raise
            holder.close()
            emit.progress(phase="indexes", message=f"building indexes and constraints of {database}")
            post.finish()
    finally:
        holder.close()
    sequences = _copy_sequences(ctx, database)
    emit.info(f"database {database}: {len(chosen)} tables, {sequences} sequences copied")


# ---- sync / status ---------------------------------------------------------------------------


def _sync_database(ctx: Context, database: str) -> None:
    name = replication_name(database, ctx.target)
    chosen, _ = _tables(ctx, database)
    with connect(ctx.source, database) as src:
        if not _ensure_publication(src, ctx, database, chosen):
            ctx.emit.warn(f"database {database}: no tables selected, nothing to sync")
            return
        slot = src.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [name]).fetchone()
    source_info = sql.Literal(conninfo(ctx.source, database))
    ident = sql.Identifier(name)
    with connect(ctx.target, database) as dst:
        existing = dst.execute(
            "SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
            "WHERE d.datname = current_database() AND s.subname = %s",
            [name],
        ).fetchone()
        if existing:
            dst.execute(sql.SQL("ALTER SUBSCRIPTION {} CONNECTION {}").format(ident, source_info))
            dst.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(ident))
            dst.execute(
                sql.SQL("ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = false)").format(ident)
            )
            ctx.emit.info(f"database {database}: subscription {name} already present, refreshed")
            return
        dst.execute(
            sql.SQL(
                "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} "
                "WITH (copy_data = false, create_slot = {}, slot_name = {})"
            ).format(
                ident,
                source_info,
                sql.Identifier(PUBLICATION),
                sql.Literal(slot is None),
                sql.Literal(name),
            )
        )
    ctx.emit.info(f"database {database}: subscription {name} created")


def sync(ctx: Context) -> None:
    with connect(ctx.source) as src:
        wal_level = src.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
        if wal_level != "logical":
            raise EngineError(f"the source's wal_level is {wal_level}; sync needs wal_level = logical")
        databases = _selected_databases(ctx, src)
    ctx.emit.progress(phase="sync", databases_total=len(databases), message="setting up continuous sync")
    for index, database in enumerate(databases):
        ctx.emit.progress(current_database=database, message=f"setting up sync of {database}")
        _sync_database(ctx, database)
        ctx.emit.progress(databases_completed=index + 1)
    ctx.emit.progress(
        phase="done",
        current_database=None,
        percent=100.0,
        message=f"continuous sync running for {len(databases)} databases",
    )


def status(ctx: Context) -> None:
    with connect(ctx.source) as src:
        databases = _selected_databases(ctx, src)
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


# ---- verify ------------------------------------------------------------------------------------

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
    """Row count and an order-independent checksum of every row's text, per table, both sides."""
    with connect(ctx.source) as src:
        databases = _selected_databases(ctx, src)
    ctx.emit.progress(phase="verify", databases_total=len(databases), message="verifying")
    problems: list[str] = []
    checked = 0
    for index, database in enumerate(databases):
        chosen, _ = _tables(ctx, database)
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


# ---- validate -----------------------------------------------------------------------------------


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def validate(ctx: Context) -> None:
    emit = ctx.emit
    problems: list[str] = []
    warnings: list[str] = []
    try:
        src = connect(ctx.source)
    except psycopg.OperationalError as exc:
        raise EngineError(f"cannot connect to the source ({ctx.source.redacted}): {exc}") from exc
    try:
        tgt = connect(ctx.target)
    except psycopg.OperationalError as exc:
        src.close()
        raise EngineError(f"cannot connect to the target ({ctx.target.redacted}): {exc}") from exc
    with src, tgt:
        source_major, target_major = server_major(src), server_major(tgt)
        emit.info(f"source PostgreSQL {src.info.server_version}, target PostgreSQL {tgt.info.server_version}")
        if target_major < source_major:
            problems.append(f"target PostgreSQL {target_major} is older than source {source_major}")
        try:
            tools = find_tools(source_major)
            emit.info(f"pg_dump {tools.major} from {tools.bin_dir}")
        except EngineError as exc:
            problems.append(str(exc))
        databases = _selected_databases(ctx, src)
        sizes: dict[str, int] = dict(
            src.execute(
                "SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname = ANY(%s)",
                [databases],
            ).fetchall()
        )
        for database in databases:
            emit.info(f"source database {database}: {_mb(sizes.get(database, 0))}")
        role = src.execute(
            "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        wal_level = src.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
        emit.info(f"source wal_level = {wal_level}")
        if ctx.options.enable_sync:
            if wal_level != "logical":
                problems.append(
                    f"source wal_level is {wal_level}; continuous sync needs wal_level = logical "
                    "(or submit with enable_sync = false)"
                )
            if role is not None and not (role[0] or role[1]):
                problems.append("the source user lacks the REPLICATION attribute needed for sync")
            slots = int(src.execute("SHOW max_replication_slots").fetchone()[0])  # type: ignore[index]
            if slots < len(databases):
                problems.append(
                    f"source max_replication_slots = {slots}, fewer than {len(databases)} databases"
                )
        target_role = tgt.execute(
            "SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        if target_role is not None and not (target_role[0] or target_role[1]):
            problems.append("the target user may not create databases (needs CREATEDB)")
        if ctx.options.enable_sync and target_role is not None and not target_role[0]:
            warnings.append("the target user is not a superuser: creating subscriptions may be refused")
        existing = {
            r[0] for r in tgt.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", [databases])
        }
    for database in databases:
        with connect(ctx.source, database) as conn:
            unreadable = conn.execute(
                "SELECT n.nspname || '.' || c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg\\_toast%' "
                "AND NOT has_table_privilege(c.oid, 'SELECT') ORDER BY 1 LIMIT 10"
            ).fetchall()
        if unreadable:
            problems.append(f"cannot read {database}: {', '.join(r[0] for r in unreadable)}")
        if database in existing and not ctx.options.drop_existing:
            with connect(ctx.target, database) as conn:
                if catalog.user_relation_count(conn):
                    warnings.append(
                        f"target database {database} exists and is not empty (init needs drop_existing)"
                    )
    for warning in warnings:
        emit.warn(warning)
    total = sum(sizes.values())
    if problems:
        for problem in problems:
            emit.error(problem)
        raise EngineError("validation failed: " + "; ".join(problems))
    message = (
        f"validation passed: {len(databases)} databases, {_mb(total)}, source PostgreSQL {source_major}, "
        f"target PostgreSQL {target_major}" + (f"; {len(warnings)} warnings" if warnings else "")
    )
    emit.progress(
        phase="done",
        databases_total=len(databases),
        databases_completed=len(databases),
        percent=100.0,
        message=message,
    )
    emit.info(message)
