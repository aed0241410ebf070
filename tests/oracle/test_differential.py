"""The engine's init judged against pg_dump | pg_restore on generated hostile databases.

A bounded, fixed set of examples runs in the normal suite; `make fuzz-engine` runs many
random ones (ORACLE_MAX_EXAMPLES, ORACLE_RANDOM=1).
"""

from __future__ import annotations

import os

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from psycopg import sql

from jobs.spec import Command
from local_cloud.postgres import LocalPostgres
from tests.engines.engine_helpers import create_database, engine_job, reset_target, run_pg_engine
from tests.oracle.differential import differential_check
from tests.oracle.schemas import DATABASE, ENGINE_ENV, ROLES, Database, databases

pytestmark = pytest.mark.postgres

RANDOM = os.environ.get("ORACLE_RANDOM") == "1"
EXAMPLES = int(os.environ.get("ORACLE_MAX_EXAMPLES") or 6)
# A fixed seed in the normal suite (the same examples every run, none stored between runs);
# random and shrunk to a smallest failing database in a long run.
oracle_settings = settings(
    max_examples=EXAMPLES,
    derandomize=not RANDOM,
    database=None,
    deadline=None,
    phases=list(Phase) if RANDOM else [Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def make_roles(server: LocalPostgres) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        for role in ROLES:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))


def make_source(server: LocalPostgres, db: Database) -> None:
    make_roles(server)
    create_database(server, DATABASE)
    with psycopg.connect(server.url(DATABASE), autocommit=True) as conn:
        for statement in db.statements:
            conn.execute(statement)  # type: ignore[arg-type]


def assert_same_as_pg_restore(
    source: LocalPostgres, reference: LocalPostgres, target: LocalPostgres, db: Database
) -> None:
    make_source(source, db)
    found = differential_check(source, reference, target, DATABASE, copy_roles=db.copy_roles, env=ENGINE_ENV)
    assert not found, "\n".join(found) + f"\n\nfor the database made by:\n{db}"


@oracle_settings
@given(db=databases())
def test_generated_databases_copy_as_pg_restore_restores_them(
    oracle_source: LocalPostgres, reference_server: LocalPostgres, oracle_target: LocalPostgres, db: Database
) -> None:
    assert_same_as_pg_restore(oracle_source, reference_server, oracle_target, db)


@settings(oracle_settings, max_examples=max(1, EXAMPLES // 3))
@given(db=databases())
def test_postgresql_15_sources_copy_into_16_as_pg_restore_restores_them(
    pg15_server: LocalPostgres, reference_server: LocalPostgres, oracle_target: LocalPostgres, db: Database
) -> None:
    assert_same_as_pg_restore(pg15_server, reference_server, oracle_target, db)


def test_a_copy_from_16_into_15_is_refused_before_anything_is_made(
    oracle_source: LocalPostgres, pg15_server: LocalPostgres
) -> None:
    create_database(oracle_source, "downgraded", "CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)")
    reset_target(pg15_server)
    run = run_pg_engine(
        engine_job(
            Command.INIT,
            oracle_source.url(),
            pg15_server.url(),
            {"include_databases": ["downgraded"]},
            enable_sync=False,
        )
    )
    assert run.returncode == 1, run.text
    assert "the target runs PostgreSQL 15, older than the source (16)" in run.text
    with psycopg.connect(pg15_server.url(), autocommit=True) as conn:
        made = conn.execute("SELECT datname FROM pg_database WHERE datname = 'downgraded'").fetchall()
    assert made == []


def test_database_settings_keep_the_text_they_were_set_with(
    oracle_source: LocalPostgres, reference_server: LocalPostgres, oracle_target: LocalPostgres
) -> None:
    """pg_dump writes a setting back as pg_db_role_setting holds it: '60s' stays '60s', not '1min'."""
    db = Database(
        statements=[
            f"ALTER DATABASE {DATABASE} SET statement_timeout = '60s'",
            f"ALTER DATABASE {DATABASE} SET work_mem = '2048kB'",
            f'ALTER DATABASE {DATABASE} SET search_path = "a b", public, "$user"',
            f"ALTER DATABASE {DATABASE} SET myapp.note = 'it''s, \"quoted\"'",
        ]
    )
    assert_same_as_pg_restore(oracle_source, reference_server, oracle_target, db)
    with psycopg.connect(oracle_target.url(), autocommit=True) as conn:
        stored = conn.execute(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE d.datname = %s AND s.setrole = 0",
            [DATABASE],
        ).fetchone()
    assert stored is not None
    assert sorted(stored[0]) == [
        'myapp.note=it\'s, "quoted"',
        'search_path="a b", public, "$user"',
        "statement_timeout=60s",
        "work_mem=2048kB",
    ]


def test_reg_values_naming_user_objects_keep_their_names(
    oracle_source: LocalPostgres, reference_server: LocalPostgres, oracle_target: LocalPostgres
) -> None:
    """A regtype or regclass value is an OID in binary COPY; a user object's OID differs on the target."""
    db = Database(
        statements=[
            "CREATE TYPE mood AS ENUM ('sad', 'ok')",
            "CREATE TABLE named (id int PRIMARY KEY)",
            "CREATE DOMAIN some_class AS regclass",
            "CREATE TABLE refs (id int, kind regtype, rel some_class, kinds regtype[])",
            "INSERT INTO refs VALUES (1, 'mood', 'named', ARRAY['mood'::regtype, 'int4'])",
        ]
    )
    assert_same_as_pg_restore(oracle_source, reference_server, oracle_target, db)
    with psycopg.connect(oracle_target.url(DATABASE), autocommit=True) as conn:
        row = conn.execute("SELECT kind::text, rel::text, kinds::text FROM refs").fetchone()
    assert row == ("mood", "named", "{mood,integer}")
