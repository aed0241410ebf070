"""End to end: an `init` into a target database the user created empty beforehand (allowed
without `drop_existing`) that loses its instance half way through that database's copy."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import psycopg
import pytest

from local_cloud.ec2_driver import instance_processes
from local_cloud.postgres import LocalPostgres, start_postgres
from local_cloud.sample_data import create_sample, row_counts, table_checksums
from tests.support.e2e import PASSWORD, RunningStack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

DATABASE = "prefilled"  # large enough that its copy is in flight for seconds


@pytest.fixture(scope="module")
def big_source() -> Iterator[LocalPostgres]:
    with start_postgres(password=PASSWORD) as server:
        create_sample(server.url(), database=DATABASE, scale=3.0)
        yield server


def user_tables(server: LocalPostgres, database: str) -> int:
    with psycopg.connect(server.url(database)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_an_init_into_an_empty_existing_database_resumes_after_losing_its_instance(
    stack: RunningStack, big_source: LocalPostgres, target: LocalPostgres
) -> None:
    with psycopg.connect(target.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE} TEMPLATE template0")
        users_database = database_oid(conn, DATABASE)
    job_id = stack.submit(
        "init",
        big_source.url(),
        target.url(),
        filter={"include_databases": [DATABASE]},
        options={"enable_sync": False},
    )
    wait_for(
        lambda: stack.item(job_id).get("status") == "running" and user_tables(target, DATABASE) > 0,
        90,
        "the copy into the existing database under way",
        interval=0.05,
    )
    # Freeze the attempt mid-copy (every process of its instance), then take the instance away.
    lost_instance = str(stack.item(job_id)["instance_id"])
    for pid in instance_processes(lost_instance, None):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    stack.client("ec2").terminate_instances(InstanceIds=[lost_instance])
    stack.wait_no_processes(lost_instance)

    job, _ = stack.follow(job_id, timeout=180)
    assert job["status"] == "completed", (job["error"], job["lost_attempts"])
    assert job["attempt"] == 2
    assert row_counts(target.url(), DATABASE) == row_counts(big_source.url(), DATABASE)
    assert table_checksums(target.url(), DATABASE) == table_checksums(big_source.url(), DATABASE)
    # Emptied, not dropped: the database is still the one its user made.
    logs = stack.api("GET", f"/jobs/{job_id}/logs")[1]["logs"]
    assert any(f"emptied target database {DATABASE}, left half copied" in line for line in logs), logs
    with psycopg.connect(target.url(), autocommit=True) as conn:
        assert database_oid(conn, DATABASE) == users_database


def database_oid(conn: psycopg.Connection, database: str) -> int:
    row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", [database]).fetchone()
    assert row is not None
    return int(row[0])
