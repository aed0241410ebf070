"""A hostile source database: code planted in it must not run on the target during a copy.

A role that owns one database on the source (NOSUPERUSER, NOCREATEDB) plants a function
that, run with the target user's rights, changes that user's password, creates a
superuser and runs a program on the target's host. Each object below calls it when the
copy or the replication evaluates it on the target. Without `trust_source_code`, `init`
and `validate` refuse the job naming the object, and nothing of it runs: for a superuser
target and for an ordinary CREATEDB-only owner role (the managed-database case).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from engine_helpers import engine_job, reset_target, run_pg_engine
from psycopg import sql

from jobs.spec import Command
from local_cloud.postgres import LocalPostgres
from worker.engines import summarize_failure
from worker.engines.base import job_secrets

pytestmark = pytest.mark.timeout(600)

PLANTER = "planter"
PLANTER_PASSWORD = "planter-test-pw"
VICTIM_PASSWORD = "victim-test-pw"
PLANTED_ROLE = "planted_superuser"
DATABASE = "planted"
# Other tests leave databases of their own on the shared source server.
ONLY_PLANTED = {"include_databases": [DATABASE]}


@dataclass(frozen=True)
class TargetUser:
    name: str
    attributes: str


SUPERUSER_TARGET = TargetUser("victim_super", "SUPERUSER")
OWNER_TARGET = TargetUser("victim_owner", "CREATEDB")


def evil_function(marker: Path, source: LocalPostgres) -> str:
    """What the planter plants: each attack on its own, silent when it is refused. None on
    the source itself nor as the servers' own superuser (the test's sessions run it too):
    the servers stay usable for the tests that follow."""
    program = f"touch {marker}"
    return f"""
CREATE FUNCTION public.attack() RETURNS void LANGUAGE plpgsql VOLATILE AS $body$
BEGIN
    IF pg_catalog.inet_server_port() = {source.port} OR current_user = '{source.user}' THEN
        RETURN;
    END IF;
    BEGIN
        EXECUTE format('ALTER ROLE %I PASSWORD %L', current_user, 'planted-test-pw');
    EXCEPTION WHEN others THEN NULL;
    END;
    BEGIN
        EXECUTE 'CREATE ROLE {PLANTED_ROLE} SUPERUSER LOGIN PASSWORD ''planted-test-pw''';
    EXCEPTION WHEN others THEN NULL;
    END;
    BEGIN
        EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', '{program}');
    EXCEPTION WHEN others THEN NULL;
    END;
END
$body$;
-- Declared immutable, as index expressions and generated columns need; the statements run
-- in the volatile function it calls.
CREATE FUNCTION public.evil(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $body$
BEGIN
    PERFORM public.attack();
    RETURN v;
END
$body$;
CREATE FUNCTION public.evil_trigger() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    PERFORM public.evil(1);
    RETURN NEW;
END
$body$;
"""


ROWS = "INSERT INTO t (id, v) SELECT g, g FROM generate_series(1, 20) g;"
PLAIN_TABLE = "CREATE TABLE t (id int PRIMARY KEY, v int);"

# name -> (what the planter creates after the function, a word the refusal names, needs sync)
VECTORS: dict[str, tuple[str, str, bool]] = {
    "table check": (
        "CREATE TABLE t (id int PRIMARY KEY, v int CHECK (public.evil(v) IS NOT NULL));" + ROWS,
        "constraint t_v_check",
        False,
    ),
    "domain check": (
        "CREATE DOMAIN guarded AS int CHECK (public.evil(VALUE) IS NOT NULL);"
        "CREATE TABLE t (id int PRIMARY KEY, v guarded);" + ROWS,
        "guarded",
        False,
    ),
    "index expression": (
        PLAIN_TABLE + ROWS + "CREATE INDEX t_evil_idx ON t ((public.evil(v)));",
        "t_evil_idx",
        False,
    ),
    "index predicate": (
        PLAIN_TABLE + ROWS + "CREATE INDEX t_partial_idx ON t (v) WHERE public.evil(v) > 0;",
        "t_partial_idx",
        False,
    ),
    "exclusion constraint": (
        PLAIN_TABLE
        + ROWS
        + "ALTER TABLE t ADD CONSTRAINT t_excl EXCLUDE USING btree ((public.evil(v)) WITH =);",
        "t_excl",
        False,
    ),
    "generated column": (
        "CREATE TABLE t (id int PRIMARY KEY, v int, w int GENERATED ALWAYS AS (public.evil(v)) STORED);"
        + ROWS,
        "generated column w",
        False,
    ),
    "partition key": (
        "CREATE TABLE t (id int, v int) PARTITION BY RANGE ((public.evil(v)));"
        "CREATE TABLE t_all PARTITION OF t FOR VALUES FROM (MINVALUE) TO (MAXVALUE);" + ROWS,
        "partition key",
        False,
    ),
    "statistics expression": (
        PLAIN_TABLE + ROWS + "CREATE STATISTICS t_stats ON (public.evil(v)) FROM t;",
        "t_stats",
        False,
    ),
    "materialized view": (
        PLAIN_TABLE + ROWS + "CREATE MATERIALIZED VIEW evil_view AS SELECT public.evil(v) FROM t;",  # noqa: S608
        "evil_view",
        False,
    ),
    "materialized view over a view": (
        PLAIN_TABLE  # noqa: S608 (test constants)
        + ROWS
        + "CREATE VIEW inner_view AS SELECT public.evil(v) AS e FROM t;"
        + "CREATE MATERIALIZED VIEW outer_view AS SELECT e FROM inner_view;",
        "outer_view",
        False,
    ),
    "trigger enable always": (
        PLAIN_TABLE
        + ROWS
        + "CREATE TRIGGER t_always BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION public.evil_trigger();"
        + "ALTER TABLE t ENABLE ALWAYS TRIGGER t_always;",
        "t_always",
        True,
    ),
    "trigger enable replica": (
        PLAIN_TABLE
        + ROWS
        + "CREATE TRIGGER t_replica BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION public.evil_trigger();"
        + "ALTER TABLE t ENABLE REPLICA TRIGGER t_replica;",
        "t_replica",
        True,
    ),
}


def _admin(server: LocalPostgres, database: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(psycopg.conninfo.make_conninfo(server.url(), dbname=database), autocommit=True)


def _drop_role(conn: psycopg.Connection, name: str) -> None:
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _planter_url(source: LocalPostgres) -> str:
    return psycopg.conninfo.make_conninfo(
        source.url(), dbname=DATABASE, user=PLANTER, password=PLANTER_PASSWORD
    )


def plant(source: LocalPostgres, script: str) -> None:
    """The planter's own database on the source, made by the planter as the planter."""
    with _admin(source) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [PLANTER]).fetchone()
        # Again each time: rows the planter inserts ran the planted code on the source too.
        conn.execute(
            sql.SQL(
                ("ALTER" if exists else "CREATE")
                + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}"
            ).format(sql.Identifier(PLANTER), sql.Literal(PLANTER_PASSWORD))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(PLANTER))
        )
    with psycopg.connect(_planter_url(source), autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (
            False,
        )
        conn.execute(script)  # type: ignore[arg-type]


@dataclass
class Victim:
    server: LocalPostgres
    user: TargetUser

    @property
    def url(self) -> str:
        return f"postgresql://{self.user.name}:{VICTIM_PASSWORD}@127.0.0.1:{self.server.port}/postgres"

    def password_hash(self) -> str:
        with _admin(self.server) as conn:
            row = conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", [self.user.name]
            ).fetchone()
        assert row is not None
        return str(row[0])

    def role_exists(self, name: str) -> bool:
        with _admin(self.server) as conn:
            return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone() is not None

    def database_exists(self) -> bool:
        with _admin(self.server) as conn:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
                is not None
            )

    def can_log_in(self) -> bool:
        try:
            psycopg.connect(self.url, connect_timeout=5).close()
        except psycopg.OperationalError:
            return False
        return True


@pytest.fixture(params=[SUPERUSER_TARGET, OWNER_TARGET], ids=["superuser-target", "owner-role-target"])
def victim(request: pytest.FixtureRequest, fidelity_target: LocalPostgres) -> Iterator[Victim]:
    user: TargetUser = request.param
    with _admin(fidelity_target) as conn:
        for name in (PLANTED_ROLE, user.name):
            _drop_role(conn, name)
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN " + user.attributes + " PASSWORD {}").format(  # type: ignore[arg-type]
                sql.Identifier(user.name), sql.Literal(VICTIM_PASSWORD)
            )
        )
    yield Victim(fidelity_target, user)
    reset_target(fidelity_target)
    with _admin(fidelity_target) as conn:
        for name in (PLANTED_ROLE, user.name):
            _drop_role(conn, name)


@pytest.fixture
def marker() -> Iterator[Path]:
    path = Path("/tmp") / f"hostile-source-{uuid.uuid4().hex}"
    yield path
    path.unlink(missing_ok=True)


def source_url(source: LocalPostgres) -> str:
    return source.url(DATABASE)


def assert_untouched(victim: Victim, before: str, marker: Path) -> None:
    effects = []
    if victim.password_hash() != before or not victim.can_log_in():
        effects.append("the target user's password was changed")
    if victim.role_exists(PLANTED_ROLE):
        effects.append("a superuser role was created on the target")
    if marker.exists():
        effects.append("a program ran on the target's host")
    assert effects == [], "the planted code ran on the target"


def write_on_source(source: LocalPostgres) -> None:
    """A row for the subscription's apply worker to insert on the target (firing triggers)."""
    with psycopg.connect(_planter_url(source), autocommit=True) as conn:  # the trigger fires here too
        conn.execute("INSERT INTO t (id, v) VALUES (1000, 1000)")


def wait_for_row(victim: Victim, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with _admin(victim.server, DATABASE) as conn:
            if conn.execute("SELECT 1 FROM t WHERE id = 1000").fetchone():
                return
        time.sleep(0.25)


@pytest.mark.parametrize("vector", list(VECTORS), ids=lambda name: name.replace(" ", "-"))
def test_init_refuses_code_planted_in_the_source(
    vector: str, victim: Victim, fidelity_source: LocalPostgres, marker: Path
) -> None:
    script, named, with_sync = VECTORS[vector]
    if with_sync and victim.user is OWNER_TARGET:
        pytest.skip("an owner role cannot create subscriptions: only a superuser target replicates")
    plant(fidelity_source, evil_function(marker, fidelity_source) + script)
    before = victim.password_hash()
    run = run_pg_engine(
        engine_job(Command.INIT, source_url(fidelity_source), victim.url, ONLY_PLANTED, enable_sync=with_sync)
    )
    if with_sync and run.returncode == 0:
        write_on_source(fidelity_source)
        wait_for_row(victim)
    assert_untouched(victim, before, marker)
    assert run.returncode == 1, run.text
    assert "trust_source_code" in run.text
    assert named in run.text
    assert "public.evil(integer)" in run.text or "public.evil_trigger()" in run.text
    assert not victim.database_exists(), "init created the target database before refusing"


@pytest.mark.parametrize("vector", ["table check", "materialized view"], ids=["table-check", "matview"])
def test_validate_names_the_planted_objects(
    vector: str, victim: Victim, fidelity_source: LocalPostgres, marker: Path
) -> None:
    script, named, _ = VECTORS[vector]
    plant(fidelity_source, evil_function(marker, fidelity_source) + script)
    run = run_pg_engine(
        engine_job(Command.VALIDATE, source_url(fidelity_source), victim.url, ONLY_PLANTED, enable_sync=False)
    )
    assert run.returncode == 1, run.text
    assert f"{DATABASE}: " in run.text and named in run.text and "trust_source_code" in run.text
    assert not victim.database_exists()


def test_functions_the_copy_never_evaluates_are_copied_without_trust(
    victim: Victim, fidelity_source: LocalPostgres, marker: Path
) -> None:
    """Plain functions, views, ordinary triggers (they fire in the target's own sessions, not
    in the copy's nor in the apply worker's) and built-in expressions need no trust."""
    plant(
        fidelity_source,
        evil_function(marker, fidelity_source)  # noqa: S608 (test constants)
        + "CREATE TABLE t (id int PRIMARY KEY, v int CHECK (v > 0),"
        + " w int GENERATED ALWAYS AS (v * 2) STORED);"
        + ROWS
        + "CREATE INDEX t_lower_idx ON t ((abs(v))) WHERE v > 1;"
        + "CREATE VIEW evil_view AS SELECT public.evil(v) FROM t;"
        + "CREATE TRIGGER t_ordinary BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION public.evil_trigger();"
        + "CREATE MATERIALIZED VIEW counts AS SELECT count(*) AS n FROM t;"
        # Settings reach the target as data: quotes and statements in a value stay in the value.
        + f"ALTER DATABASE {DATABASE} SET application_name = $$x'; CREATE ROLE injected_role; --$$;"
        + f'ALTER DATABASE {DATABASE} SET search_path = "$user", public;',
    )
    before = victim.password_hash()
    run = run_pg_engine(
        engine_job(Command.INIT, source_url(fidelity_source), victim.url, ONLY_PLANTED, enable_sync=False)
    )
    assert run.returncode == 0, run.text
    assert_untouched(victim, before, marker)
    with _admin(victim.server, DATABASE) as conn:
        assert conn.execute("SELECT count(*), sum(w) FROM t").fetchone() == (20, 420)
        assert conn.execute("SELECT n FROM counts").fetchone() == (20,)
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'evil'").fetchone() == (1,)
        settings = conn.execute(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE d.datname = %s AND s.setrole = 0",
            [DATABASE],
        ).fetchone()
    assert settings is not None
    assert sorted(settings[0]) == sorted(
        ["application_name=x'; CREATE ROLE injected_role; --", 'search_path="$user", public']
    )
    assert not victim.role_exists("injected_role")


def test_trusted_source_code_is_copied(victim: Victim, fidelity_source: LocalPostgres) -> None:
    """With trust_source_code the job says the source's code may run: a benign check is copied."""
    plant(
        fidelity_source,
        "CREATE FUNCTION public.positive(v int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT v > 0';"
        "CREATE TABLE t (id int PRIMARY KEY, v int CHECK (public.positive(v)));" + ROWS,
    )
    refused = run_pg_engine(
        engine_job(Command.INIT, source_url(fidelity_source), victim.url, ONLY_PLANTED, enable_sync=False)
    )
    assert refused.returncode == 1 and "public.positive(integer)" in refused.text, refused.text
    run = run_pg_engine(
        engine_job(
            Command.INIT,
            source_url(fidelity_source),
            victim.url,
            ONLY_PLANTED,
            enable_sync=False,
            trust_source_code=True,
        )
    )
    assert run.returncode == 0, run.text
    with _admin(victim.server, DATABASE) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (20,)
        assert conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 't_v_check'"
        ).fetchone() == ("CHECK (positive(v))",)


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("search_path = public, pg_catalog", "search_path"),
        (f"role = {PLANTER}", "role"),
        ("default_transaction_read_only = on", "default_transaction_read_only"),
    ],
    ids=["search-path-before-catalog", "role", "read-only"],
)
def test_settings_that_change_later_sessions_are_refused(
    setting: str, named: str, victim: Victim, fidelity_source: LocalPostgres
) -> None:
    """A search_path that puts a schema before pg_catalog would let the source's functions
    stand in for built-ins in the engine's later sessions (and its users'); a role setting
    makes every later session that role."""
    plant(fidelity_source, PLAIN_TABLE + ROWS + f"ALTER DATABASE {DATABASE} SET {setting};")
    run = run_pg_engine(
        engine_job(Command.INIT, source_url(fidelity_source), victim.url, ONLY_PLANTED, enable_sync=False)
    )
    assert run.returncode == 1, run.text
    assert f"database setting {named}" in run.text and "trust_source_code" in run.text
    assert not victim.database_exists()


# The most of its own text a source may put in one job error (worker.engines.pg.tools).
SOURCE_TEXT_LIMIT = 300
FAKE_LINE = "ERROR: init completed, nothing to see here"


def test_an_error_raised_by_the_source_reaches_the_job_error_clipped(
    victim: Victim, fidelity_source: LocalPostgres
) -> None:
    """A trusted source's function raising a huge, many-line error: the job's error keeps the
    engine's own words; the source's text in it is one clipped piece, its lines not passed
    off as the engine's."""
    plant(
        fidelity_source,
        "CREATE FUNCTION public.loud(v int) RETURNS bool LANGUAGE plpgsql AS $body$"
        " BEGIN IF pg_catalog.inet_server_port() <> "
        + str(fidelity_source.port)
        + " THEN RAISE EXCEPTION '%', repeat('x', 500) || E'\\n"
        + FAKE_LINE
        + "\\n"
        + FAKE_LINE
        + "'; END IF; RETURN true; END $body$;"
        "CREATE TABLE t (id int PRIMARY KEY, v int CHECK (public.loud(v)));" + ROWS,
    )
    job = engine_job(
        Command.INIT,
        source_url(fidelity_source),
        victim.url,
        ONLY_PLANTED,
        enable_sync=False,
        trust_source_code=True,
    )
    run = run_pg_engine(job)
    assert run.returncode == 1, run.text
    error = summarize_failure(run.parsed, job_secrets(job))
    # One line of the engine's, naming what failed; the source's lines are not lines of it.
    assert error.startswith("ERROR: copying planted.public.t failed: "), error
    assert " | " not in error and error.count(FAKE_LINE) <= 1, error
    assert max(len(run_of_x) for run_of_x in re.findall("x+", error)) <= SOURCE_TEXT_LIMIT, error
    assert len(error) < 2 * SOURCE_TEXT_LIMIT, error


def test_sync_refuses_what_the_apply_worker_would_run_unless_trusted(
    victim: Victim, fidelity_source: LocalPostgres
) -> None:
    """The subscription's apply worker evaluates the source's checks for every row it writes:
    a sync job that does not say it trusts the source is refused, as init is."""
    if victim.user is OWNER_TARGET:
        pytest.skip("an owner role cannot create subscriptions: only a superuser target replicates")
    plant(
        fidelity_source,
        "CREATE FUNCTION public.positive(v int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT v > 0';"
        "CREATE TABLE t (id int PRIMARY KEY, v int CHECK (public.positive(v)));" + ROWS,
    )
    url = source_url(fidelity_source)
    init = run_pg_engine(
        engine_job(Command.INIT, url, victim.url, ONLY_PLANTED, enable_sync=True, trust_source_code=True)
    )
    assert init.returncode == 0, init.text
    refused = run_pg_engine(engine_job(Command.SYNC, url, victim.url, ONLY_PLANTED))
    assert refused.returncode == 1, refused.text
    assert "sync refused" in refused.text and "public.positive(integer)" in refused.text
    trusted = run_pg_engine(engine_job(Command.SYNC, url, victim.url, ONLY_PLANTED, trust_source_code=True))
    assert trusted.returncode == 0, trusted.text
