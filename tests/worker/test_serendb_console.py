"""A SerenDB project target prepared through the console API (the local stand-in in front
of a real PostgreSQL server): missing databases created, logical replication enabled,
and every console refusal a clear job error that never quotes the key."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from jobs.spec import Command, ProjectTarget
from local_cloud.console import Branch, ConsoleStandIn, Project
from local_cloud.postgres import LocalPostgres, start_postgres
from worker.serendb import ConsoleClient, ConsoleError, prepare_target

pytestmark = pytest.mark.postgres

KEY = "seren_console-unit-test-key"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalPostgres]:
    with start_postgres(password="console-test-pw") as running:
        yield running


@pytest.fixture
def console(server: LocalPostgres) -> Iterator[ConsoleStandIn]:
    projects = [
        Project(
            "proj-1",
            "shop",
            [Branch("br-main", "main", is_default=True), Branch("br-idle", "idle", has_compute=False)],
        )
    ]
    with ConsoleStandIn(server.url(), KEY, projects) as running:
        yield running


def _databases(server: LocalPostgres) -> set[str]:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def _prepare(
    console: ConsoleStandIn, target: ProjectTarget, command: Command, key: str = KEY, **kw: bool
) -> list[str]:
    notes: list[str] = []
    prepare_target(
        ConsoleClient(console.url, key, 5),
        target,
        command,
        enable_sync=kw.get("enable_sync", False),
        note=notes.append,
    )
    return notes


def test_init_creates_the_missing_databases_once(console: ConsoleStandIn, server: LocalPostgres) -> None:
    target = ProjectTarget(
        project_id="proj-1", branch_id="br-main", databases=["postgres", "app_one", "app_two"]
    )
    notes = _prepare(console, target, Command.INIT)
    assert {"app_one", "app_two"} <= _databases(server)
    assert notes == [
        "created database app_one on SerenDB branch br-main",
        "created database app_two on SerenDB branch br-main",
    ]
    assert _prepare(console, target, Command.INIT) == []  # already there: nothing created
    assert ("POST", "/api/projects/proj-1/branches/br-main/databases") in console.requests


def test_a_run_that_syncs_enables_logical_replication(console: ConsoleStandIn) -> None:
    target = ProjectTarget(project_id="proj-1", branch_id="br-main")
    assert _prepare(console, target, Command.VERIFY) == []
    assert _prepare(console, target, Command.INIT, enable_sync=False) == []
    assert _prepare(console, target, Command.SYNC) == [
        "enabled logical replication on SerenDB project proj-1"
    ]
    assert console.projects[0].enable_logical_replication is True
    assert _prepare(console, target, Command.INIT, enable_sync=True) == []  # already on


@pytest.mark.parametrize(
    ("target", "key", "said"),
    [
        (
            ProjectTarget(project_id="proj-1", branch_id="br-main"),
            "wrong-key",
            "refused the job's seren_api_key (401)",
        ),
        (ProjectTarget(project_id="nope", branch_id="br-main"), KEY, "project nope was not found (404)"),
        (
            ProjectTarget(project_id="proj-1", branch_id="br-gone"),
            KEY,
            "project proj-1 has no branch br-gone",
        ),
        (
            ProjectTarget(project_id="proj-1", branch_id="br-idle", databases=["x"]),
            KEY,
            "branch br-idle of project proj-1 has no compute endpoint",
        ),
    ],
)
def test_console_refusals_are_clear_errors(
    console: ConsoleStandIn, target: ProjectTarget, key: str, said: str
) -> None:
    with pytest.raises(ConsoleError) as caught:
        _prepare(console, target, Command.INIT, key)
    assert said in str(caught.value)
    assert KEY not in str(caught.value) and "wrong-key" not in str(caught.value)


def test_an_unreachable_console_is_a_clear_error() -> None:
    client = ConsoleClient("http://127.0.0.1:9", KEY, 2)
    with pytest.raises(ConsoleError, match="could not be reached"):
        prepare_target(
            client, ProjectTarget(project_id="p", branch_id="b"), Command.INIT, enable_sync=False, note=print
        )
