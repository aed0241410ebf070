"""Fixtures for the worker tests: a local AWS (moto server with fault injection) and real
PostgreSQL servers (a seeded source, an empty target)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from jobs import aws
from local_cloud.postgres import LocalPostgres, start_postgres

sys.path.insert(0, str(Path(__file__).parent))

from stack import Cloud, start_cloud

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

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def cloud() -> Iterator[Cloud]:
    saved = {name: os.environ.get(name) for name in [*AWS_TEST_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(AWS_TEST_ENV)
    stack = start_cloud()
    yield stack
    stack.moto.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    aws.reset_clients()


@pytest.fixture(autouse=True)
def _no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "cloud" in request.fixturenames:
        request.getfixturevalue("cloud").faults().clear()


@pytest.fixture(scope="session")
def source() -> Iterator[LocalPostgres]:
    server = start_postgres(password=SOURCE_PASSWORD)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {SOURCE_DATABASE}")
    with psycopg.connect(server.url(SOURCE_DATABASE), autocommit=True) as conn:
        conn.execute(SHOP_SQL)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def target_server() -> Iterator[LocalPostgres]:
    server = start_postgres(password=TARGET_PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def target(target_server: LocalPostgres) -> Iterator[LocalPostgres]:
    _drop_user_databases(target_server)
    yield target_server
    _drop_user_databases(target_server)


def _drop_user_databases(server: LocalPostgres) -> None:
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
