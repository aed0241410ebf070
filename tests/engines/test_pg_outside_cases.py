"""Databases the engine's authors did not write, judged as pg_dump would be: each case once
left the target silently different from the source, and is now a faithful copy or a clear failure.

Every test copies databases of its own from `fidelity_source` and judges the target with
plain SQL (rows compared by column name), not with the engine's own `verify`.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from engine_helpers import create_database, engine_job, run_pg_engine
from psycopg import sql

from jobs.spec import Command
from local_cloud.postgres import LocalPostgres
from worker.engines import summarize_failure

pytestmark = pytest.mark.postgres


def rows_by_name(url: str, table: str) -> list[object]:
    """Every row of `table` (ONLY) as a JSON object keyed by column name, in a fixed order."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT to_jsonb(t) FROM ONLY {} t ORDER BY to_jsonb(t)::text").format(
                    sql.Identifier(table)
                )
            )
        ]


# A parent whose column `d` came after its child existed, and a table attached with INHERIT:
# pg_dump makes both children with the parent's columns first, not in the source's order.
_INHERITANCE_SQL = """
CREATE TABLE parent (a int, b int);
CREATE TABLE child_small (c int) INHERITS (parent);
CREATE TABLE child_big (c int, pad text) INHERITS (parent);
ALTER TABLE parent ADD COLUMN d int;
CREATE TABLE adopted (x int PRIMARY KEY, pad text, b int, a int, d int);
ALTER TABLE adopted INHERIT parent;
INSERT INTO parent VALUES (1, 2, 3);
INSERT INTO child_small (a, b, c, d) SELECT g, 200 + g, 3000 + g, 40000 + g FROM generate_series(1, 100) g;
INSERT INTO child_big (a, b, c, d, pad)
    SELECT g, 200 + g, 3000 + g, 40000 + g, repeat('p', 120) FROM generate_series(1, 70000) g;
INSERT INTO adopted (x, a, b, d, pad)
    SELECT g, 10 + g, 20 + g, 30 + g, repeat('q', 120) FROM generate_series(1, 70000) g;
"""


@pytest.mark.parametrize("split_mb", [None, "2"], ids=["whole-tables", "block-ranges"])
def test_inheritance_children_keep_values_in_their_named_columns(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres, split_mb: str | None
) -> None:
    create_database(fidelity_source, "inherit_order", _INHERITANCE_SQL)
    with psycopg.connect(fidelity_source.url("inherit_order"), autocommit=True) as conn:
        # Over the in-process threshold: copied through psql (and in block ranges when split).
        assert conn.execute("SELECT pg_total_relation_size('child_big') > 8 << 20").fetchone() == (True,)
        assert conn.execute("SELECT pg_total_relation_size('adopted') > 8 << 20").fetchone() == (True,)
    env = {"PG_ENGINE_SPLIT_MB": split_mb} if split_mb else {}
    run = run_pg_engine(
        engine_job(
            Command.INIT,
            fidelity_source.url(),
            fidelity_target.url(),
            {"include_databases": ["inherit_order"]},
            enable_sync=False,
        ),
        extra_env=env,
    )
    assert run.returncode == 0, run.text
    with psycopg.connect(fidelity_target.url("inherit_order"), autocommit=True) as conn:
        # The premise: the target's children have their columns in another order.
        order = conn.execute(
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
            "WHERE attrelid = 'child_small'::regclass AND attnum > 0"
        ).fetchone()
        assert order == ("a,b,d,c",)
    for table in ("parent", "child_small", "child_big", "adopted"):
        source_rows = rows_by_name(fidelity_source.url("inherit_order"), table)
        target_rows = rows_by_name(fidelity_target.url("inherit_order"), table)
        assert len(target_rows) == len(source_rows), table
        assert target_rows[:3] == source_rows[:3], table
        assert target_rows == source_rows, table


@pytest.fixture
def unusable_databases(fidelity_source: LocalPostgres):
    create_database(fidelity_source, "usable", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
    create_database(fidelity_source, "closed_db", "CREATE TABLE t (id int);")
    create_database(fidelity_source, "template_db", "CREATE TABLE t (id int);")
    with psycopg.connect(fidelity_source.url(), autocommit=True) as conn:
        conn.execute("ALTER DATABASE closed_db ALLOW_CONNECTIONS false")
        conn.execute("ALTER DATABASE template_db IS_TEMPLATE true")
    yield
    with psycopg.connect(fidelity_source.url(), autocommit=True) as conn:
        for name in ("closed_db", "template_db"):
            conn.execute(f"ALTER DATABASE {name} IS_TEMPLATE false ALLOW_CONNECTIONS true")  # type: ignore[arg-type]
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("database", "reason"),
    [("closed_db", "does not accept connections"), ("template_db", "template")],
)
@pytest.mark.parametrize("command", [Command.VALIDATE, Command.INIT, Command.VERIFY])
@pytest.mark.usefixtures("unusable_databases")
def test_a_named_database_that_cannot_be_copied_fails_naming_it(
    fidelity_source: LocalPostgres,
    fidelity_target: LocalPostgres,
    command: Command,
    database: str,
    reason: str,
) -> None:
    run = run_pg_engine(
        engine_job(
            command,
            fidelity_source.url(),
            fidelity_target.url(),
            {"include_databases": ["usable", database]},
            enable_sync=False,
        )
    )
    failure = summarize_failure(run.parsed)
    assert run.returncode == 1, run.text
    assert database in failure and reason in failure, failure
    with psycopg.connect(fidelity_target.url(), autocommit=True) as conn:
        copied = conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'usable'").fetchone()
    assert copied == (0,)  # refused before anything was copied


# `blocker` is copied first (largest, one copy worker) and held up on the target while the
# DDL runs on the source, after the snapshot and before the victims are read: `victim_big`
# through psql, `victim` in process. Each victim holds the same number of rows at every instant.
_CONCURRENT_SQL = """
CREATE TABLE blocker (id int PRIMARY KEY, pad text);
INSERT INTO blocker SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 90000) g;
CREATE TABLE victim_big (id int PRIMARY KEY, v int, pad text);
INSERT INTO victim_big SELECT g, g, repeat(md5(g::text), 4) FROM generate_series(1, 60000) g;
CREATE TABLE victim (id int PRIMARY KEY, v int);
INSERT INTO victim SELECT g, g FROM generate_series(1, 1000) g;
"""
_DDL = {
    "truncate-reload": "BEGIN; TRUNCATE victim, victim_big; "
    "INSERT INTO victim SELECT g, -g FROM generate_series(1, 1000) g; "
    "INSERT INTO victim_big SELECT g, -g, 'x' FROM generate_series(1, 60000) g; COMMIT",
    "alter-type": "ALTER TABLE victim ALTER v TYPE bigint; ALTER TABLE victim_big ALTER v TYPE bigint",
    "set-unlogged": "ALTER TABLE victim SET UNLOGGED; ALTER TABLE victim_big SET UNLOGGED",
}


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _table_exists(server: LocalPostgres, database: str, table: str) -> bool:
    try:
        with psycopg.connect(server.url(database), autocommit=True) as conn:
            return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone() == (True,)
    except psycopg.OperationalError:
        return False


def _waiting_on_lock(server: LocalPostgres, query_start: str) -> bool:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            [query_start + "%"],
        ).fetchone()
    return row is not None and row[0] > 0


@pytest.mark.parametrize(
    ("ddl", "with_sync"),
    # With sync, a rewrite is not replicated: a table copied empty would stay empty.
    [
        *(
            pytest.param(
                name,
                False,
                id=name,
                marks=pytest.mark.xfail(
                    name == "set-unlogged",
                    reason="known defect: the engine hangs until the test's timeout in about 1 run of 4",
                    strict=False,
                ),
            )
            for name in _DDL
        ),
        pytest.param("alter-type", True, id="alter-type-with-sync"),
    ],
)
def test_ddl_during_the_copy_waits_for_it_instead_of_emptying_tables(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres, ddl: str, with_sync: bool
) -> None:
    create_database(fidelity_source, "ddl_during_copy", _CONCURRENT_SQL)
    source_url = fidelity_source.url("ddl_during_copy")
    before = {t: rows_by_name(source_url, t) for t in ("victim", "victim_big")}
    with psycopg.connect(source_url, autocommit=True) as conn:
        sizes = conn.execute(
            "SELECT pg_total_relation_size('blocker'), pg_total_relation_size('victim_big')"
        ).fetchone()
    assert sizes is not None and sizes[0] > sizes[1] > 8 << 20
    job = engine_job(
        Command.INIT,
        fidelity_source.url(),
        fidelity_target.url(),
        {"include_databases": ["ddl_during_copy"]},
        enable_sync=with_sync,
    )
    ddl_errors: list[BaseException] = []

    def run_ddl() -> None:
        try:
            with psycopg.connect(source_url, autocommit=True) as conn:
                conn.execute(_DDL[ddl])  # type: ignore[arg-type]
        except BaseException as exc:  # reported by the test's own thread
            ddl_errors.append(exc)

    with ThreadPoolExecutor(max_workers=1) as pool:
        engine = pool.submit(run_pg_engine, job, {"PG_ENGINE_JOBS": "1"})
        _wait_for(
            lambda: engine.done() or _table_exists(fidelity_target, "ddl_during_copy", "blocker"),
            "the target's table",
        )
        assert not engine.done(), engine.result().text
        hold = psycopg.connect(fidelity_target.url("ddl_during_copy"))
        hold.execute("LOCK TABLE blocker IN ACCESS EXCLUSIVE MODE")
        ddl_thread = threading.Thread(target=run_ddl)
        ddl_thread.start()
        # Done at once when nothing stops it, or waiting for the copy's locks.
        first_word = _DDL[ddl].split()[0]
        _wait_for(
            lambda: not ddl_thread.is_alive() or _waiting_on_lock(fidelity_source, first_word), "the DDL"
        )
        hold.rollback()
        hold.close()
        run = engine.result(timeout=300)
    ddl_thread.join(timeout=60)
    assert not ddl_thread.is_alive() and not ddl_errors, ddl_errors
    assert run.returncode == 0, run.text
    target_url = fidelity_target.url("ddl_during_copy")
    for table, rows in before.items():
        copied = rows_by_name(target_url, table)
        assert len(copied) == len(rows), table
        assert copied == rows, table


def test_a_table_held_exclusively_fails_the_copy_naming_it_instead_of_hanging(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source,
        "held",
        "CREATE TABLE free (id int); CREATE TABLE busy (id int); INSERT INTO busy VALUES (1);",
    )
    with psycopg.connect(fidelity_source.url("held")) as holder:
        holder.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        job = engine_job(
            Command.INIT,
            fidelity_source.url(),
            fidelity_target.url(),
            {"include_databases": ["held"]},
            enable_sync=False,
        )
        run = run_pg_engine(job, {"PG_ENGINE_LOCK_TIMEOUT_SECONDS": "2"}, timeout=60)
        holder.rollback()
    failure = summarize_failure(run.parsed)
    assert run.returncode == 1, run.text
    assert "public.busy" in failure and "exclusive lock" in failure, failure


def test_keys_built_by_the_engine_keep_replica_identity_and_cluster(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    # Over the in-process threshold: the engine builds these keys itself (USING INDEX).
    create_database(
        fidelity_source,
        "key_properties",
        """
        CREATE TABLE big (id int PRIMARY KEY, code text NOT NULL CONSTRAINT big_code_key UNIQUE, pad text);
        INSERT INTO big SELECT g, 'c' || g, repeat(md5(g::text), 3) FROM generate_series(1, 70000) g;
        ALTER TABLE big REPLICA IDENTITY USING INDEX big_code_key;
        ALTER TABLE big CLUSTER ON big_pkey;
        CREATE TABLE other (id int PRIMARY KEY, pad text);
        INSERT INTO other SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 70000) g;
        ALTER TABLE other REPLICA IDENTITY USING INDEX other_pkey;
        ALTER TABLE other CLUSTER ON other_pkey;
        """,
    )
    with psycopg.connect(fidelity_source.url("key_properties"), autocommit=True) as conn:
        assert conn.execute("SELECT pg_total_relation_size('big') > 8 << 20").fetchone() == (True,)
    run = run_pg_engine(
        engine_job(
            Command.INIT,
            fidelity_source.url(),
            fidelity_target.url(),
            {"include_databases": ["key_properties"]},
            enable_sync=False,
        )
    )
    assert run.returncode == 0, run.text
    query = (
        "SELECT c.relname, c.relreplident::text, i.relname, x.indisreplident, x.indisclustered, "
        "x.indisprimary "
        "FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE c.relname IN ('big', 'other') ORDER BY 1, 3"
    )
    expected = [
        ("big", "i", "big_code_key", True, False, False),
        ("big", "i", "big_pkey", False, True, True),
        ("other", "i", "other_pkey", True, True, True),
    ]
    with psycopg.connect(fidelity_source.url("key_properties"), autocommit=True) as conn:
        assert conn.execute(query).fetchall() == expected  # type: ignore[arg-type]
    with psycopg.connect(fidelity_target.url("key_properties"), autocommit=True) as conn:
        assert conn.execute(query).fetchall() == expected  # type: ignore[arg-type]


def test_a_database_whose_sessions_default_to_latin1_is_copied_in_utf8(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    """A database setting the engine's own sessions would obey: `client_encoding = LATIN1`
    cannot carry the comments and rows of a UTF8 database, and init failed on them."""
    create_database(
        fidelity_source,
        "latin1_sessions",
        "CREATE TABLE city (id int PRIMARY KEY, name text);"
        "INSERT INTO city VALUES (1, '東京'), (2, 'Zürich');"
        "COMMENT ON TABLE city IS '都市';"
        "ALTER DATABASE latin1_sessions SET client_encoding = 'LATIN1'",
    )
    job = engine_job(
        Command.INIT,
        fidelity_source.url(),
        fidelity_target.url(),
        {"include_databases": ["latin1_sessions"]},
        enable_sync=False,
    )
    run = run_pg_engine(job)
    assert run.returncode == 0, run.text
    target_url = fidelity_target.url("latin1_sessions") + "?client_encoding=UTF8"
    assert rows_by_name(target_url, "city") == rows_by_name(
        fidelity_source.url("latin1_sessions") + "?client_encoding=UTF8", "city"
    )
    with psycopg.connect(target_url) as conn:
        assert conn.execute("SELECT obj_description('city'::regclass)").fetchone() == ("都市",)
        assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)
