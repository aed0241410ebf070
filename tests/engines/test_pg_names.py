"""Names read from the source's catalog are names, never connection strings.

A source database named like a libpq conninfo (`port=N password=... dbname=postgres`)
once made `pg_restore -d <name>` restore onto a third server the job never named.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from engine_helpers import SOURCE_PASSWORD, database_url, engine_job, run_pg_engine, table_fingerprints
from psycopg import sql

from jobs.spec import Command
from local_cloud.postgres import LocalPostgres, start_postgres
from worker.engines import summarize_failure

pytestmark = pytest.mark.postgres

ATTACKER_PASSWORD = "attacker-test-pw"
ODD_NAME = 'odd name, "quoted" é'


@pytest.fixture
def attacker() -> Iterator[LocalPostgres]:
    """A third server that the job never names; it logs every connection it receives."""
    server = start_postgres(password=ATTACKER_PASSWORD, settings={"log_connections": "on"})
    yield server
    server.stop()


@pytest.fixture
def hostile_source() -> Iterator[LocalPostgres]:
    server = start_postgres(password=SOURCE_PASSWORD)
    yield server
    server.stop()


def connections_logged(server: LocalPostgres) -> int:
    return (server.root / "server.log").read_text(errors="replace").count("connection received")


def test_a_database_named_like_a_connection_string_reaches_no_other_server(
    hostile_source: LocalPostgres, attacker: LocalPostgres, target_server: LocalPostgres
) -> None:
    hostile = f"port={attacker.port} password={ATTACKER_PASSWORD} dbname=postgres"
    with psycopg.connect(hostile_source.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ODD_NAME)))
    with psycopg.connect(database_url(hostile_source, ODD_NAME), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('x')")
    with psycopg.connect(hostile_source.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(hostile)))
    with psycopg.connect(database_url(hostile_source, hostile), autocommit=True) as conn:
        conn.execute("CREATE TABLE planted (x int)")
    before = connections_logged(attacker)

    for command in (Command.VALIDATE, Command.INIT, Command.VERIFY):
        run = run_pg_engine(engine_job(command, hostile_source.url(), target_server.url(), enable_sync=False))
        assert run.returncode == 1, run.text
        assert "connection settings" in summarize_failure(run.parsed), command
    assert connections_logged(attacker) == before

    # Without the hostile database, a legitimate odd name (spaces, quotes, unicode) copies.
    with psycopg.connect(hostile_source.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(hostile)))
    try:
        run = run_pg_engine(
            engine_job(Command.INIT, hostile_source.url(), target_server.url(), enable_sync=False)
        )
        assert run.returncode == 0, run.text
        assert table_fingerprints(database_url(target_server, ODD_NAME)) == table_fingerprints(
            database_url(hostile_source, ODD_NAME)
        )
    finally:
        with psycopg.connect(target_server.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(ODD_NAME)))
    assert connections_logged(attacker) == before
