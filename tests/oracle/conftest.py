"""Servers for the differential check, started once and shared: a source, the reference
restore's server, the engine's target, and a PostgreSQL 15 server where Debian's is installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local_cloud.postgres import DEBIAN_PG15_BIN_DIR, LocalPostgres, start_postgres
from tests.engines.engine_helpers import SOURCE_PASSWORD, TARGET_PASSWORD

REFERENCE_PASSWORD = "s3cret-test-pw-reference"


def _server(password: str, **options: object) -> Iterator[LocalPostgres]:
    server = start_postgres(password=password, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def oracle_source() -> Iterator[LocalPostgres]:
    yield from _server(SOURCE_PASSWORD)


@pytest.fixture(scope="session")
def reference_server() -> Iterator[LocalPostgres]:
    yield from _server(REFERENCE_PASSWORD)


@pytest.fixture(scope="session")
def oracle_target() -> Iterator[LocalPostgres]:
    yield from _server(TARGET_PASSWORD)


@pytest.fixture(scope="session")
def pg15_server() -> Iterator[LocalPostgres]:
    if not (DEBIAN_PG15_BIN_DIR / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 server binaries are not installed ({DEBIAN_PG15_BIN_DIR})")
    yield from _server(SOURCE_PASSWORD, binaries=DEBIAN_PG15_BIN_DIR)
