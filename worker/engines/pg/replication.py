"""Logical replication objects the engine owns: publication, slots and subscriptions.

Each is named `replication_name(database, target)`: one publication, one slot and one
subscription per source database and target. The publication lists exactly the tables
the job replicates (never FOR ALL TABLES: a published table without a replica identity
refuses UPDATE and DELETE on the source). When a job's outcome no longer needs them
(a failed init, an init without sync), the slot and publication are dropped.
"""

from __future__ import annotations

import hashlib
import re
import time

import psycopg
from psycopg import sql

from jobs.urls import ConnectionUrl
from worker.engines.pg.catalog import Table
from worker.engines.pg.context import Context
from worker.engines.pg.tools import EngineError, connect, conninfo

SLOT_RELEASE_SECONDS = 15


def replication_name(database: str, target: ConnectionUrl) -> str:
    """Slot and subscription name: per database and per target, valid as a slot name."""
    digest = hashlib.sha256(f"{target.host}:{target.port}/{database}".encode()).hexdigest()[:10]
    return f"seren_{re.sub(r'[^a-z0-9_]', '_', database.lower())[:40]}_{digest}"


def wait_and_drop_slot(src: psycopg.Connection, name: str) -> None:
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


def ensure_publication(src: psycopg.Connection, name: str, chosen: list[Table]) -> bool:
    """Make publication `name` list exactly `chosen`; False (and no publication) when empty."""
    exists = src.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [name]).fetchone()
    pub = sql.Identifier(name)
    if not chosen:
        if exists:
            src.execute(sql.SQL("DROP PUBLICATION {}").format(pub))
        return False
    tables = sql.SQL(", ").join(t.ident for t in chosen)
    verb = "ALTER PUBLICATION {} SET TABLE {}" if exists else "CREATE PUBLICATION {} FOR TABLE {}"
    src.execute(sql.SQL(verb).format(pub, tables))
    return True


def forget_source(ctx: Context, database: str) -> None:
    """Drop this job's slot and publication in one source database, if they are there."""
    name = replication_name(database, ctx.target)
    try:
        with connect(ctx.source, database) as src:
            wait_and_drop_slot(src, name)
            if src.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [name]).fetchone():
                src.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name)))
                ctx.emit.info(f"dropped publication {name} in source database {database}")
    except (psycopg.Error, EngineError) as exc:
        ctx.emit.warn(f"could not drop replication slot or publication {name} in {database}: {exc}")


def drop_subscriptions(ctx: Context, database: str, *, only: str | None = None) -> None:
    """Subscriptions hold a database open and a slot on the source: release both before a drop.
    `only`: drop that one subscription, if it is there, and keep any other."""
    with connect(ctx.target, database) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                "WHERE d.datname = current_database() AND s.subname = coalesce(%s, s.subname)",
                [only],
            ).fetchall()
        ]
        for name in names:
            ident = sql.Identifier(name)
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
            conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
            ctx.emit.info(f"dropped subscription {name} in target database {database}")


def subscribe(ctx: Context, database: str) -> None:
    """Create (or refresh) the subscription of one target database to its source database."""
    name = replication_name(database, ctx.target)
    chosen, _ = ctx.tables(database)
    with connect(ctx.source, database) as src:
        slot = src.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [name]).fetchone()
    existing = _subscription_exists(ctx, database, name)
    if not existing and slot is None:
        # Only init's slot knows the copy's point in time: a subscription starting now
        # would lose every row written since the copy.
        raise EngineError(
            f"database {database} was not copied by an init with sync (no replication slot holds its "
            "point in time); rows written since would be lost: run init with enable_sync and drop_existing"
        )
    with connect(ctx.source, database) as src:
        if not ensure_publication(src, name, chosen):
            ctx.emit.warn(f"database {database}: no tables selected, nothing to sync")
            return
    source_info = sql.Literal(conninfo(ctx.source, database))
    ident = sql.Identifier(name)
    with connect(ctx.target, database) as dst:
        if existing:
            dst.execute(sql.SQL("ALTER SUBSCRIPTION {} CONNECTION {}").format(ident, source_info))
            dst.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(ident))
            dst.execute(
                sql.SQL("ALTER SUBSCRIPTION {} SET PUBLICATION {} WITH (copy_data = false)").format(
                    ident, ident
                )
            )
            ctx.emit.info(f"database {database}: subscription {name} already present, refreshed")
            return
        dst.execute(
            sql.SQL(
                "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} "
                "WITH (copy_data = false, create_slot = false, slot_name = {})"
            ).format(ident, source_info, ident, sql.Literal(name))
        )
    ctx.emit.info(f"database {database}: subscription {name} created")


def _subscription_exists(ctx: Context, database: str, name: str) -> bool:
    try:
        with connect(ctx.target, database) as dst:
            row = dst.execute(
                "SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                "WHERE d.datname = current_database() AND s.subname = %s",
                [name],
            ).fetchone()
    except psycopg.OperationalError:
        return False  # no such target database
    return row is not None
