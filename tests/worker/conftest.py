"""Fixtures for the worker tests: a local AWS (moto server with fault injection) and real
PostgreSQL servers (a seeded source, an empty target)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from stack import Cloud, start_cloud
from worker_helpers import (
    SHOP_SQL,
    SOURCE_DATABASE,
    SOURCE_PASSWORD,
    TARGET_PASSWORD,
    drop_user_databases,
)

from jobs import aws
from local_cloud.postgres import LocalPostgres, start_postgres
from tests.support.aws_env import FAKE_AWS_ENVIRONMENT


@pytest.fixture(scope="session")
def cloud() -> Iterator[Cloud]:
    saved = {name: os.environ.get(name) for name in [*FAKE_AWS_ENVIRONMENT, "AWS_ENDPOINT_URL"]}
    os.environ.update(FAKE_AWS_ENVIRONMENT)
    stack = start_cloud()
    yield stack
    stack.relay.stop()
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
