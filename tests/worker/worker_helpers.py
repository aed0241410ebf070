"""Constants and helpers shared by the worker tests (imported by conftest and tests)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from local_cloud.postgres import LocalPostgres

SOURCE_PASSWORD = "s3cret-test-pw-worker-source"
TARGET_PASSWORD = "s3cret-test-pw-worker-target"
SOURCE_DATABASE = "shop"
SHOP_SQL = """
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, profile jsonb);
CREATE TABLE orders (
    id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id), total numeric(12, 2));
CREATE INDEX orders_customer_idx ON orders (customer_id);
INSERT INTO customers (name, profile)
    SELECT 'Zoë ' || g || ' 東京', jsonb_build_object('tier', g % 3) FROM generate_series(1, 1000) g;
INSERT INTO orders (customer_id, total)
    SELECT 1 + g % 1000, (g * 7.31) % 1000 FROM generate_series(1, 5000) g;
"""


def drop_user_databases(server: LocalPostgres) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        for (name,) in conn.execute(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'"
        ).fetchall():
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextmanager
def locked_orders(server: LocalPostgres, release_after: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on shop.orders: the engine blocks on it until it is released
    (a long job on demand). With `release_after`, it is released that many seconds later."""
    conn = psycopg.connect(server.url(SOURCE_DATABASE))
    conn.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
    guard = threading.Lock()

    def release() -> None:
        with guard:
            if not conn.closed:
                conn.rollback()
                conn.close()

    timer = threading.Timer(release_after, release) if release_after is not None else None
    if timer is not None:
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        release()
