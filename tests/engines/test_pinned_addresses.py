"""Every connection of the pg engine goes to the address the worker checked, never to a new
lookup of the name: with a host name that does not resolve at all, init (psycopg, pg_dump,
pg_restore, psql), sync's subscription, verify and status all still work, and the
subscription the target keeps names the checked address."""

from __future__ import annotations

from dataclasses import replace

import psycopg
import pytest
from engine_helpers import EngineRun, engine_job, run_pg_engine

from jobs.spec import Command
from local_cloud.postgres import LocalPostgres

pytestmark = pytest.mark.postgres

# RFC 6761: never resolves. A lookup of it anywhere in the engine fails the job.
UNRESOLVABLE = "rebind.invalid"


def by_unresolvable_name(server: LocalPostgres, database: str = "postgres") -> str:
    return server.url(database).replace("@127.0.0.1:", f"@{UNRESOLVABLE}:")


def test_every_connection_uses_the_checked_address(source: LocalPostgres, target: LocalPostgres) -> None:
    def pinned(command: Command) -> EngineRun:
        job = engine_job(
            command,
            by_unresolvable_name(source),
            by_unresolvable_name(target),
            {"include_databases": ["analytics"]},
        )
        return run_pg_engine(replace(job, source_hostaddr="127.0.0.1", target_hostaddr="127.0.0.1"))

    init = pinned(Command.INIT)
    assert init.returncode == 0, init.text
    assert "continuous sync running" in init.progress[-1].message
    with psycopg.connect(target.url("analytics"), autocommit=True) as conn:
        (conninfo,) = conn.execute("SELECT subconninfo FROM pg_subscription").fetchone() or ("",)
    assert "hostaddr=127.0.0.1" in conninfo and UNRESOLVABLE in conninfo
    for command in (Command.VERIFY, Command.STATUS):
        run = pinned(command)
        assert run.returncode == 0, run.text


def test_without_the_checked_address_the_name_is_looked_up(
    source: LocalPostgres, target: LocalPostgres
) -> None:
    """The control: the same job by name alone fails, so the test above proves pinning."""
    run = run_pg_engine(
        engine_job(Command.STATUS, by_unresolvable_name(source), by_unresolvable_name(target))
    )
    assert run.returncode != 0
    assert UNRESOLVABLE in run.text
