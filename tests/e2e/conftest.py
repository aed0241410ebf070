"""Fixtures of the local-cloud tests: fake AWS credentials for the driver tests (moto in
process), and for the end-to-end tests a whole local stack in a child process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import pytest

from jobs import aws
from local_cloud.postgres import LocalPostgres, start_postgres
from local_cloud.sample_data import create_sample
from tests.support.aws_env import use_fake_aws
from tests.support.e2e import BLOCKER_DATABASE, PASSWORD, RunningStack, running_stack


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    use_fake_aws(monkeypatch)
    yield
    aws.reset_clients()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(tmp_path_factory.mktemp("stack") / "state") as running:
        yield running


@pytest.fixture(scope="session")
def source() -> Iterator[LocalPostgres]:
    """The sample database `shop`, and a database `blocker` whose table a test can lock
    to hold a job in `running` for as long as it needs."""
    with start_postgres(password=PASSWORD) as server:
        create_sample(server.url(), scale=0.2)
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {BLOCKER_DATABASE}")
        with psycopg.connect(server.url(BLOCKER_DATABASE), autocommit=True) as conn:
            conn.execute("CREATE TABLE held (id int PRIMARY KEY, note text)")
            conn.execute("INSERT INTO held SELECT g, 'row ' || g FROM generate_series(1, 100) g")
        yield server


@pytest.fixture
def target() -> Iterator[LocalPostgres]:
    with start_postgres(password=PASSWORD) as server:
        yield server


@pytest.fixture
def held_lock(source: LocalPostgres) -> Iterator[None]:
    """Jobs on the `blocker` database wait while this holds its table locked."""
    with psycopg.connect(source.url(BLOCKER_DATABASE)) as conn:
        conn.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        yield
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
