"""Fixtures for the worker tests: a local AWS (moto server with fault injection) and real
PostgreSQL servers (a seeded source, an empty target)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jobs import aws
from local_cloud.postgres import LocalPostgres, start_postgres

sys.path.insert(0, str(Path(__file__).parent))

from stack import Cloud, start_cloud
from worker_helpers import (
    AWS_TEST_ENV,
    SHOP_SQL,
    SOURCE_DATABASE,
    SOURCE_PASSWORD,
    TARGET_PASSWORD,
    drop_user_databases,
)


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
    drop_user_databases(target_server)
    yield target_server
    drop_user_databases(target_server)


