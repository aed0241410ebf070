"""What would make `init` fail after the data is in is reported by `validate`, and refused by
`init` before it creates anything, each naming the object and the fix."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from engine_helpers import create_database, engine_job, run_pg_engine
from psycopg import sql

from jobs.spec import Command
from local_cloud.postgres import LocalPostgres
from worker.engines import summarize_failure

pytestmark = pytest.mark.postgres

DATABASE = "early"


def run(
    command: Command, source: LocalPostgres, target: LocalPostgres, job_filter: dict | None = None, **options
):
    options.setdefault("enable_sync", False)
    job_filter = job_filter or {"include_databases": [DATABASE]}
    return run_pg_engine(engine_job(command, source.url(), target.url(), job_filter, **options))


def target_has_database(target: LocalPostgres) -> bool:
    with psycopg.connect(target.url(), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone() is not None


def refused_up_front(
    source: LocalPostgres, target: LocalPostgres, named: list[str], job_filter: dict | None = None, **options
) -> None:
    """validate fails and init refuses, each naming every item of `named`; nothing is made."""
    for command in (Command.VALIDATE, Command.INIT):
        done = run(command, source, target, job_filter, **options)
        assert done.returncode == 1, done.text
        error = summarize_failure(done.parsed)
        for item in named:
            assert item in error, (command, item, error)
    assert not target_has_database(target)


def test_a_user_mapping_for_a_role_the_target_lacks(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    with psycopg.connect(fidelity_source.url(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'fe_mapped'").fetchone():
            conn.execute("CREATE ROLE fe_mapped")
    create_database(
        fidelity_source,
        DATABASE,
        """
        CREATE FOREIGN DATA WRAPPER fe_wrapper;
        CREATE SERVER fe_server FOREIGN DATA WRAPPER fe_wrapper;
        CREATE USER MAPPING FOR fe_mapped SERVER fe_server;
        CREATE TABLE t (id int PRIMARY KEY);
        """,
    )
    # copy_roles creates the roles grants and policies name, not this one.
    refused_up_front(
        fidelity_source, fidelity_target, ["fe_mapped", "fe_server", "CREATE ROLE"], copy_roles=True
    )


def test_an_unlogged_table_with_sync(fidelity_source: LocalPostgres, fidelity_target: LocalPostgres) -> None:
    create_database(
        fidelity_source,
        DATABASE,
        "CREATE TABLE kept (id int PRIMARY KEY); CREATE UNLOGGED TABLE scratchpad (id int PRIMARY KEY);",
    )
    refused_up_front(fidelity_source, fidelity_target, ["public.scratchpad", "SET LOGGED"], enable_sync=True)


def test_include_tables_whose_defaults_checks_and_indexes_need_objects_left_out(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source,
        DATABASE,
        """
        CREATE SEQUENCE shared_numbers;
        CREATE FUNCTION stamp() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'x' $$;
        CREATE FUNCTION is_even(int) RETURNS bool LANGUAGE sql IMMUTABLE AS $$ SELECT $1 % 2 = 0 $$;
        CREATE FUNCTION folded(text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT lower($1) $$;
        CREATE TABLE numbered (id int PRIMARY KEY DEFAULT nextval('shared_numbers'));
        CREATE TABLE stamped (id int PRIMARY KEY, tag text DEFAULT stamp());
        CREATE TABLE checked (id int PRIMARY KEY CHECK (is_even(id)));
        CREATE TABLE indexed (id int PRIMARY KEY, name text);
        CREATE INDEX indexed_folded ON indexed (folded(name));
        CREATE SCHEMA ext;
        CREATE EXTENSION vector SCHEMA ext;
        CREATE TABLE embedded (id int PRIMARY KEY, e ext.vector(3));
        CREATE INDEX embedded_e ON embedded USING hnsw (e ext.vector_l2_ops);
        CREATE TABLE own_numbers (id serial PRIMARY KEY);
        """,
    )
    tables = ["numbered", "stamped", "checked", "indexed", "embedded", "own_numbers"]
    refused_up_front(
        fidelity_source,
        fidelity_target,
        [
            "shared_numbers",
            "stamp()",
            "is_even(integer)",
            "folded(text)",
            "extension vector",
            "exclude_tables",
        ],
        {"include_tables": [f"{DATABASE}.{name}" for name in tables]},
    )
    # A table whose own sequence comes with it is copied.
    done = run(
        Command.INIT, fidelity_source, fidelity_target, {"include_tables": [f"{DATABASE}.own_numbers"]}
    )
    assert done.returncode == 0, done.text


@pytest.fixture
def source_tablespace(fidelity_source: LocalPostgres) -> Iterator[str]:
    location = fidelity_source.root / "fe_space"
    location.mkdir(exist_ok=True)
    if fidelity_source.run_as is not None:
        os.chown(location, fidelity_source.run_as.pw_uid, fidelity_source.run_as.pw_gid)
    with psycopg.connect(fidelity_source.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLESPACE fe_space LOCATION {}").format(sql.Literal(str(location))))
    yield "fe_space"
    with psycopg.connect(fidelity_source.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        conn.execute("DROP TABLESPACE fe_space")


def test_a_tablespace_the_target_lacks(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres, source_tablespace: str
) -> None:
    create_database(
        fidelity_source,
        DATABASE,
        "CREATE TABLE t (id int PRIMARY KEY, v text);"
        f"CREATE INDEX t_v ON t (v) TABLESPACE {source_tablespace};",
    )
    refused_up_front(fidelity_source, fidelity_target, [source_tablespace, "public.t_v", "CREATE TABLESPACE"])


def test_a_failed_init_leaves_no_half_made_database_it_created(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    """A foreign key the source's rows break (its triggers were disabled) fails the copy after
    the data is in: the database init created for it is dropped, one it did not is kept."""
    create_database(
        fidelity_source,
        DATABASE,
        """
        CREATE TABLE parent (id int PRIMARY KEY);
        CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent);
        ALTER TABLE child DISABLE TRIGGER ALL;
        INSERT INTO child SELECT g, g FROM generate_series(1, 100) g;
        ALTER TABLE child ENABLE TRIGGER ALL;
        """,
    )
    done = run(Command.INIT, fidelity_source, fidelity_target)
    assert done.returncode == 1, done.text
    assert "child" in summarize_failure(done.parsed)
    assert not target_has_database(fidelity_target)
    # An empty database of the user's that init was filling stays (emptying it is a retry's job).
    with psycopg.connect(fidelity_target.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    done = run(Command.INIT, fidelity_source, fidelity_target)
    assert done.returncode == 1, done.text
    assert target_has_database(fidelity_target)
