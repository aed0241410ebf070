"""What once failed late or unclearly now works, or fails up front naming what to fix."""

from __future__ import annotations

import io
import shlex

import psycopg
import pytest
from engine_helpers import create_database, database_url, engine_job, run_pg_engine, table_fingerprints
from psycopg import sql
from pydantic import ValidationError

from jobs.spec import Command, JobFilter, name_parts
from local_cloud.postgres import LocalPostgres
from worker.engines import summarize_failure
from worker.engines.pg.catalog import user_object_count
from worker.engines.pg.events import Emitter
from worker.engines.pg.tools import EngineError, run_pipeline

pytestmark = pytest.mark.postgres


def run_on(
    command: Command, source: LocalPostgres, target: LocalPostgres, job_filter: dict, **options: object
):
    options.setdefault("enable_sync", False)
    return run_pg_engine(engine_job(command, source.url(), target.url(), job_filter, **options))


def target_has(target: LocalPostgres, database: str) -> bool:
    with psycopg.connect(target.url(), autocommit=True) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone())


def test_a_type_without_binary_io_is_copied_as_text(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source,
        "textio",
        """
        CREATE TABLE perms (id int PRIMARY KEY, item aclitem, items aclitem[], n int);
        INSERT INTO perms SELECT g,
            makeaclitem(current_user::regrole, current_user::regrole, 'SELECT', false),
            ARRAY[makeaclitem(current_user::regrole, current_user::regrole, 'UPDATE', true)], g
            FROM generate_series(1, 50) g;
        CREATE TABLE plain (id int PRIMARY KEY, v text);
        INSERT INTO plain SELECT g, 'v' || g FROM generate_series(1, 50) g;
        """,
    )
    run = run_on(Command.INIT, fidelity_source, fidelity_target, {"include_databases": ["textio"]})
    assert run.returncode == 0, run.text
    assert table_fingerprints(fidelity_target.url("textio")) == table_fingerprints(
        fidelity_source.url("textio")
    )


def test_policies_naming_roles_the_target_lacks_are_refused_up_front(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    with psycopg.connect(fidelity_source.url(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS app_reader")
        conn.execute("CREATE ROLE app_reader")
    create_database(
        fidelity_source,
        "policies",
        """
        CREATE TABLE docs (id int PRIMARY KEY, owner text);
        ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
        CREATE POLICY readers ON docs FOR SELECT TO app_reader USING (true);
        """,
    )
    job_filter = {"include_databases": ["policies"]}
    for command in (Command.VALIDATE, Command.INIT):
        run = run_on(command, fidelity_source, fidelity_target, job_filter)
        assert run.returncode == 1
        assert "app_reader" in summarize_failure(run.parsed), command
    assert not target_has(fidelity_target, "policies")

    with psycopg.connect(fidelity_target.url(), autocommit=True) as conn:
        conn.execute("CREATE ROLE app_reader")
    try:
        run = run_on(Command.INIT, fidelity_source, fidelity_target, job_filter)
        assert run.returncode == 0, run.text
    finally:
        with psycopg.connect(fidelity_target.url(), autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS policies WITH (FORCE)")
            conn.execute("DROP ROLE app_reader")


def test_a_filter_that_leaves_out_what_copied_objects_need_is_refused_with_the_list(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source,
        "deps",
        """
        CREATE SCHEMA kinds;
        CREATE TYPE kinds.mood AS ENUM ('ok', 'meh');
        CREATE TABLE base (id int PRIMARY KEY);
        CREATE TABLE refers (id int PRIMARY KEY, base_id int REFERENCES base(id));
        CREATE VIEW base_view AS SELECT id FROM base;
        CREATE TABLE moods (id int PRIMARY KEY, m kinds.mood);
        CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
        CREATE TABLE stamped (id int PRIMARY KEY);
        CREATE TRIGGER stamp BEFORE INSERT ON stamped FOR EACH ROW EXECUTE FUNCTION stamp();
        """,
    )
    excluded = run_on(Command.INIT, fidelity_source, fidelity_target, {"exclude_tables": ["deps.base"]})
    assert excluded.returncode == 1
    summary = summarize_failure(excluded.parsed)
    assert "base_view (view) uses public.base" in summary
    assert "refers (foreign key refers_base_id_fkey) references public.base" in summary

    included = run_on(
        Command.VALIDATE, fidelity_source, fidelity_target, {"include_tables": ["deps.moods", "deps.stamped"]}
    )
    assert included.returncode == 1
    summary = summarize_failure(included.parsed)
    assert "moods uses type kinds.mood" in summary
    assert "stamped (trigger stamp) calls public.stamp()" in summary
    assert not target_has(fidelity_target, "deps")


def test_a_target_holding_only_functions_is_not_empty(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(fidelity_source, "leftovers", "CREATE TABLE t (id int PRIMARY KEY);")
    create_database(
        fidelity_target, "leftovers", "CREATE FUNCTION old_helper() RETURNS int LANGUAGE sql AS 'SELECT 1';"
    )
    run = run_on(Command.INIT, fidelity_source, fidelity_target, {"include_databases": ["leftovers"]})
    assert run.returncode == 1
    assert "not empty" in summarize_failure(run.parsed)
    with psycopg.connect(fidelity_target.url("leftovers"), autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('public.t')").fetchone() == (None,)
        conn.execute("DROP FUNCTION old_helper()")
    run = run_on(Command.INIT, fidelity_source, fidelity_target, {"include_databases": ["leftovers"]})
    assert run.returncode == 0, run.text


def test_the_error_names_the_real_cause_and_statement() -> None:
    # pg_restore's last lines are context; the cause is above them.
    lines = [
        "pg_restore: while PROCESSING TOC:",
        "pg_restore: from TOC entry 215; 1259 16390 TABLE moods user",
        'pg_restore: error: could not execute query: ERROR:  type "kinds.mood" does not exist',
        "LINE 3:     m kinds.mood",
        "              ^",
        "Command was: CREATE TABLE public.moods (",
        "    id integer NOT NULL,",
        "pg_restore: warning: errors ignored on restore: 1",
    ]
    script = "; ".join(f"echo {shlex.quote(line)} >&2" for line in lines) + "; exit 1"
    with pytest.raises(EngineError) as failure:
        run_pipeline(
            [(["sh", "-c", script], {})], "schema of deps", Emitter(out=io.StringIO(), err=io.StringIO())
        )
    message = str(failure.value)
    assert 'type "kinds.mood" does not exist' in message
    assert "statement: CREATE TABLE public.moods (" in message


def test_filters_name_databases_and_tables_with_quotes(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    name = 'My Shop "é"'
    with psycopg.connect(fidelity_source.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    source_db = database_url(fidelity_source, name)
    with psycopg.connect(source_db, autocommit=True) as conn:
        conn.execute(
            'CREATE SCHEMA "sales dept"; CREATE TABLE "sales dept"."order.items" (id int PRIMARY KEY);'
            'CREATE TABLE "sales dept".other (id int);'
            'INSERT INTO "sales dept"."order.items" VALUES (1), (2);'
        )
    quoted = '"My Shop ""é"""'
    job_filter = {"include_tables": [f'{quoted}."sales dept"."order.items"'], "exclude_databases": ["other"]}
    try:
        run = run_on(Command.INIT, fidelity_source, fidelity_target, job_filter)
        assert run.returncode == 0, run.text
        target_db = database_url(fidelity_target, name)
        assert set(table_fingerprints(target_db)) == {"sales dept.order.items"}
        assert table_fingerprints(target_db) == {
            k: v for k, v in table_fingerprints(source_db).items() if k == "sales dept.order.items"
        }
    finally:
        for server in (fidelity_source, fidelity_target):
            with psycopg.connect(server.url(), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize(
    ("entry", "parts"),
    [
        ("shop", ["shop"]),
        ("shop.public.orders", ["shop", "public", "orders"]),
        ('"My DB"."a.b"', ["My DB", "a.b"]),
        ('"q ""x"""."s"."t"', ['q "x"', "s", "t"]),
    ],
)
def test_filter_names_are_parsed_quote_aware(entry: str, parts: list[str]) -> None:
    assert name_parts(entry) == parts
    assert JobFilter.model_validate({"include_tables" if len(parts) > 1 else "include_databases": [entry]})


@pytest.mark.parametrize("entry", ['"a,b".t', '"tab\tname".t', '"".t', 'a."b'])
def test_filter_names_without_a_place_are_refused(entry: str) -> None:
    with pytest.raises(ValidationError):
        JobFilter.model_validate({"include_tables": [entry]})


def test_copy_roles_creates_the_named_roles_without_passwords_and_keeps_grants(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    roles = ("app_login", "app_group")
    for server in (fidelity_source, fidelity_target):
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS granted WITH (FORCE)")
            for role in roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    with psycopg.connect(fidelity_source.url(), autocommit=True) as conn:
        conn.execute("CREATE ROLE app_group NOLOGIN CREATEDB")
        conn.execute("CREATE ROLE app_login LOGIN PASSWORD 'app-login-test-pw' CONNECTION LIMIT 5")
        conn.execute("GRANT app_group TO app_login")
    create_database(
        fidelity_source,
        "granted",
        """
        CREATE TABLE docs (id int PRIMARY KEY, owner text);
        GRANT SELECT ON docs TO app_group;
        GRANT UPDATE (owner) ON docs TO app_login;
        ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
        CREATE POLICY mine ON docs TO app_login USING (owner = current_user);
        """,
    )
    try:
        run = run_on(
            Command.INIT,
            fidelity_source,
            fidelity_target,
            {"include_databases": ["granted"]},
            copy_roles=True,
        )
        assert run.returncode == 0, run.text
        with psycopg.connect(fidelity_target.url(), autocommit=True) as conn:
            assert conn.execute(
                "SELECT rolname, rolcanlogin, rolcreatedb, rolconnlimit, rolpassword IS NULL FROM pg_authid "
                "WHERE rolname = ANY(%s) ORDER BY 1",
                [list(roles)],
            ).fetchall() == [("app_group", False, True, -1, True), ("app_login", True, False, 5, True)]
            assert conn.execute("SELECT pg_has_role('app_login', 'app_group', 'MEMBER')").fetchone() == (
                True,
            )
        with psycopg.connect(fidelity_target.url("granted"), autocommit=True) as conn:
            assert conn.execute(
                "SELECT has_table_privilege('app_group', 'docs', 'SELECT'), "
                "has_column_privilege('app_login', 'docs', 'owner', 'UPDATE'), "
                "(SELECT count(*) FROM pg_policy WHERE polname = 'mine')"
            ).fetchone() == (True, True, 1)
    finally:
        for server in (fidelity_source, fidelity_target):
            with psycopg.connect(server.url(), autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS granted WITH (FORCE)")
                for role in roles:
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_a_target_database_without_a_public_schema_is_checked_for_emptiness(
    fidelity_target: LocalPostgres,
) -> None:
    """Some users drop `public`: the check must count what is there, not fail on the name."""
    create_database(fidelity_target, "nopublic", "DROP SCHEMA public;")
    with psycopg.connect(fidelity_target.url("nopublic"), autocommit=True) as conn:
        assert user_object_count(conn) == 0
        conn.execute("CREATE SCHEMA kept; CREATE TABLE kept.t (id int)")
        assert user_object_count(conn) > 0
