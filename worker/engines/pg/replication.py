"""Logical replication objects the engine owns: publication, slots and subscriptions."""

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

PUBLICATION = "seren_replication"
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


def ensure_publication(src: psycopg.Connection, ctx: Context, database: str, chosen: list[Table]) -> bool:
    """Create or update the publication in one source database; False if it would be empty."""
    row = src.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s", [PUBLICATION]).fetchone()
    pub = sql.Identifier(PUBLICATION)
    if not ctx.has_table_rules(database):
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


def drop_subscriptions(ctx: Context, database: str) -> None:
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


def drop_slots(ctx: Context, slots: list[tuple[str, str]]) -> None:
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


def subscribe(ctx: Context, database: str) -> None:
    """Create (or refresh) the subscription of one target database to its source database."""
    name = replication_name(database, ctx.target)
    chosen, _ = ctx.tables(database)
    with connect(ctx.source, database) as src:
        if not ensure_publication(src, ctx, database, chosen):
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
