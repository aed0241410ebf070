"""Throwaway PostgreSQL servers (session-scoped) and a seeded source for the engine tests."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from engine_helpers import (
    ANALYTICS_SQL,
    SCRATCH_SQL,
    SHOP_SQL,
    SOURCE_DATABASES,
    SOURCE_PASSWORD,
    TARGET_PASSWORD,
    drop_publications,
    drop_slots,
    reset_target,
)
from psycopg import sql

from local_cloud.postgres import LocalPostgres, start_postgres


@pytest.fixture(scope="session")
def source() -> Iterator[LocalPostgres]:
    server = start_postgres(password=SOURCE_PASSWORD, logical=True)
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            for name in SOURCE_DATABASES:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        for name, script in zip(SOURCE_DATABASES, (SHOP_SQL, ANALYTICS_SQL, SCRATCH_SQL), strict=True):
            with psycopg.connect(server.url(name), autocommit=True) as conn:
                conn.execute(script)  # type: ignore[arg-type]
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def target_server() -> Iterator[LocalPostgres]:
    server = start_postgres(password=TARGET_PASSWORD)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def plain_source() -> Iterator[LocalPostgres]:
    """A source without wal_level = logical."""
    server = start_postgres(password=SOURCE_PASSWORD, logical=False)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE shop")
    yield server
    server.stop()


@pytest.fixture
def target(target_server: LocalPostgres, source: LocalPostgres) -> Iterator[LocalPostgres]:
    reset_target(target_server)
    drop_slots(source)
    yield target_server
    reset_target(target_server)
    drop_slots(source)


@pytest.fixture(scope="session")
def fidelity_source() -> Iterator[LocalPostgres]:
    """A logical source of its own: each fidelity test creates the databases it copies."""
    server = start_postgres(password=SOURCE_PASSWORD, logical=True)
    yield server
    server.stop()


@pytest.fixture
def fidelity_target(target_server: LocalPostgres, fidelity_source: LocalPostgres) -> Iterator[LocalPostgres]:
    reset_target(target_server)
    yield target_server
    reset_target(target_server)
    drop_slots(fidelity_source)
    drop_publications(fidelity_source)
