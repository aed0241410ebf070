"""Helpers for the engine tests: seed data, running the pg engine like the worker, comparing tables."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from jobs.spec import Command, JobFilter, JobOptions
from local_cloud.postgres import LocalPostgres
from worker.engines import EngineJob, ParsedLine, PgEngine

SOURCE_PASSWORD = "s3cret-test-pw-source"
TARGET_PASSWORD = "s3cret-test-pw-target"
SOURCE_DATABASES = ("shop", "analytics", "scratch")

SHOP_SQL = """
CREATE SCHEMA inventory;
CREATE TABLE customers (
    id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, profile jsonb,
    created timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00');
CREATE TABLE orders (
    id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id),
    total numeric(12, 2), note text);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE TABLE order_items (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    sku text NOT NULL, qty int NOT NULL CHECK (qty > 0));
CREATE INDEX order_items_sku_idx ON order_items (sku);
CREATE TABLE inventory.products (sku text PRIMARY KEY, title text NOT NULL, attrs jsonb);
CREATE TABLE inventory.stock (sku text REFERENCES inventory.products(sku), qty int, bin text);
-- No primary key: published for sync, its UPDATEs need a replica identity.
ALTER TABLE inventory.stock REPLICA IDENTITY FULL;
CREATE INDEX stock_bin_idx ON inventory.stock (bin) WHERE qty > 0;
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 500;
INSERT INTO customers (name, email, profile)
    SELECT 'Zoë ' || g || ' 東京 🚀', 'c' || g || '@example.test',
           jsonb_build_object('tier', g % 3, 'tags', jsonb_build_array('a', g::text), 'ünï', 'çødé')
    FROM generate_series(1, 2000) g;
INSERT INTO orders (customer_id, total, note)
    SELECT 1 + g % 2000, (g * 7.31) % 1000, CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g END
    FROM generate_series(1, 6000) g;
INSERT INTO order_items (order_id, sku, qty)
    SELECT 1 + g % 6000, 'sku-' || (g % 300), 1 + g % 4 FROM generate_series(1, 12000) g;
INSERT INTO inventory.products
    SELECT 'sku-' || g, 'Produkt «' || g || '» — ñandú', jsonb_build_object('w', g * 0.5)
    FROM generate_series(0, 299) g;
INSERT INTO inventory.stock SELECT 'sku-' || (g % 300), g % 50, 'bin-' || (g % 17)
    FROM generate_series(1, 3000) g;
"""

ANALYTICS_SQL = """
CREATE TABLE events (id bigserial PRIMARY KEY, kind text, payload jsonb, at timestamptz);
CREATE INDEX events_kind_idx ON events (kind);
CREATE TABLE audit_log (id serial PRIMARY KEY, message text);
INSERT INTO events (kind, payload, at)
    SELECT 'k' || (g % 10), jsonb_build_object('n', g, 's', repeat('x', g % 40)),
           '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute'
    FROM generate_series(1, 5000) g;
INSERT INTO audit_log (message) SELECT 'entry ' || g FROM generate_series(1, 500) g;
CREATE TABLE metrics (id int, at date, value float8, doubled float8 GENERATED ALWAYS AS (value * 2) STORED,
    PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE metrics_2024 PARTITION OF metrics FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE metrics_2025 PARTITION OF metrics FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX metrics_value_idx ON metrics (value);
INSERT INTO metrics (id, at, value)
    SELECT g, '2024-01-01'::date + (g % 700), g / 3.0 FROM generate_series(1, 3000) g;
CREATE MATERIALIZED VIEW kinds AS SELECT kind, count(*) AS n FROM events GROUP BY kind;
"""

SCRATCH_SQL = """
CREATE TABLE notes (id serial PRIMARY KEY, body text);
INSERT INTO notes (body) VALUES ('first'), ('second');
"""


def database_url(server: LocalPostgres, name: str) -> str:
    """A conninfo for database `name` (any characters) on `server`."""
    return psycopg.conninfo.make_conninfo(server.url(), dbname=name)


def reset_target(server: LocalPostgres) -> None:
    """Drop every user database (and its subscriptions) on the target."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")]
        for name in names:
            if name == "postgres":
                continue
            with psycopg.connect(database_url(server, name), autocommit=True) as db:
                for (sub,) in db.execute(
                    "SELECT subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                    "WHERE d.datname = current_database()"
                ).fetchall():
                    ident = sql.Identifier(sub)
                    db.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
                    db.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
                    db.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def drop_slots(server: LocalPostgres) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        for _ in range(40):
            rows = conn.execute("SELECT slot_name, active FROM pg_replication_slots").fetchall()
            for name, active in rows:
                if not active:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", [name])
            if all(not active for _, active in rows):
                return
            time.sleep(0.25)


@dataclass
class EngineRun:
    returncode: int
    stdout: str
    stderr: str
    parsed: list[ParsedLine] = field(default_factory=list)

    @property
    def progress(self) -> list:
        return [p.progress for p in self.parsed if p.progress is not None]

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def engine_job(
    command: Command, source_url: str, target_url: str, job_filter: dict | None = None, **options: object
) -> EngineJob:
    return EngineJob(
        command=command,
        source_url=source_url,
        target_url=target_url,
        filter=JobFilter.model_validate(job_filter or {}),
        options=JobOptions.model_validate(options),
    )


def run_pg_engine(job: EngineJob, extra_env: dict[str, str] | None = None, timeout: float = 120) -> EngineRun:
    """Run the pg engine the way the worker does: argv, env and stdin from its invocation."""
    engine = PgEngine()
    invocation = engine.invocation(job)
    env = {**os.environ, **invocation.env, **(extra_env or {})}
    done = subprocess.run(
        invocation.argv,
        env=env,
        input=invocation.stdin.decode(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    parser = engine.parser(invocation)
    parsed = [parser.parse_line(line) for line in (done.stdout + done.stderr).splitlines()]
    return EngineRun(done.returncode, done.stdout, done.stderr, parsed)


def table_fingerprints(url: str) -> dict[str, tuple[int, str]]:
    """Row count and an ordered md5 of all rows, per user table: the test's own equality check."""
    result = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"
                ).format(sql.Identifier(schema, table))
            ).fetchone()
            assert row is not None
            result[f"{schema}.{table}"] = (row[0], row[1])
    return result


def as_json(value: object) -> str:
    return json.dumps(value)


def create_database(server: LocalPostgres, name: str, script: str = "", options: str = "") -> str:
    """(Re)create database `name` on `server` with CREATE DATABASE options, run `script` in it."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} " + options).format(sql.Identifier(name)))  # type: ignore[arg-type]
    if script:
        with psycopg.connect(server.url(name), autocommit=True) as conn:
            conn.execute(script)  # type: ignore[arg-type]
    return name


def drop_publications(server: LocalPostgres) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datallowconn")]
    for name in names:
        with psycopg.connect(database_url(server, name), autocommit=True) as conn:
            for (pub,) in conn.execute("SELECT pubname FROM pg_publication").fetchall():
                conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(pub)))


def publications(server: LocalPostgres, database: str) -> dict[str, set[str]]:
    """Each publication of `database` and the tables it publishes."""
    with psycopg.connect(server.url(database), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT p.pubname, pt.schemaname || '.' || pt.tablename FROM pg_publication p "
            "LEFT JOIN pg_publication_tables pt ON pt.pubname = p.pubname"
        ).fetchall()
    found: dict[str, set[str]] = {}
    for pub, table in rows:
        found.setdefault(pub, set()).update([table] if table else [])
    return found


def slots(server: LocalPostgres) -> list[str]:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall()]
