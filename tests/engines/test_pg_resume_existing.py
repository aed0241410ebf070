"""init's resume into a target database the user created: emptied and filled again only when
this job found it empty before filling it (`DatabaseCheckpoint.found_empty`), never otherwise.

An earlier attempt is played by a whole `init` whose "done" was not recorded: its checkpoint
entry, as the worker recorded it, goes to the next run in the state `copying`. A finished
copy holds every object a half one can (and its indexes, sequences, properties too).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

import psycopg
import pytest
from engine_helpers import (
    EngineRun,
    create_database,
    drop_publications,
    engine_job,
    publications,
    run_pg_engine,
    slots,
    table_fingerprints,
)
from judge import differences, snapshot
from test_pg_object_classes import OBJECTS_SQL

from jobs.attempts import CheckpointState, DatabaseCheckpoint
from jobs.spec import Command
from jobs.urls import parse_url
from local_cloud.postgres import LocalPostgres
from worker.engines import EngineJob, ParsedLine
from worker.engines.pg.replication import replication_name

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DATABASE = "objects"  # OBJECTS_SQL sets this database's own properties
C_LOCALE = "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"

# What else a copy can put outside a schema of its own: an extension (its type in `public`),
# and objects in `public` that are neither relations, functions nor types.
EXTRAS_SQL = """
CREATE EXTENSION vector;
CREATE TABLE embeddings (id int PRIMARY KEY, e vector(3));
INSERT INTO embeddings VALUES (1, '[1,2,3]'), (2, '[0,0,1]');
CREATE AGGREGATE total(int) (sfunc = int4pl, stype = int);
CREATE PROCEDURE noop() LANGUAGE sql AS 'SELECT 1';
CREATE OPERATOR === (leftarg = int, rightarg = int, function = int4eq);
CREATE COLLATION plain (provider = libc, locale = 'C');
CREATE TEXT SEARCH CONFIGURATION simple_copy (COPY = simple);
CREATE OPERATOR CLASS int_hash_ops FOR TYPE int USING hash AS FUNCTION 1 hashint4(int);
"""


def init_job(source: LocalPostgres, target: LocalPostgres, database: str, **options: object) -> EngineJob:
    return engine_job(Command.INIT, source.url(), target.url(), {"include_databases": [database]}, **options)


def checkpoints(parsed: list[ParsedLine]) -> list[DatabaseCheckpoint]:
    """The checkpoint entries the engine printed, in order."""
    return [p.checkpoint[1] for p in parsed if p.checkpoint is not None]


def lost_before_done(entry: DatabaseCheckpoint, database: str = DATABASE) -> dict[str, DatabaseCheckpoint]:
    """The checkpoint a next attempt reads when its predecessor was lost before "done"."""
    return {database: entry.model_copy(update={"state": CheckpointState.COPYING})}


def database_row(server: LocalPostgres, database: str) -> tuple[int, str]:
    """The database's OID and grants: what only the user's own database keeps."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT oid::int8, datacl::text FROM pg_database WHERE datname = %s", [database]
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def user_database(server: LocalPostgres, script: str = "") -> tuple[int, str]:
    """The target database as its user made it beforehand: with a grant of their own."""
    create_database(server, DATABASE, script, C_LOCALE)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"REVOKE TEMPORARY ON DATABASE {DATABASE} FROM PUBLIC")
    return database_row(server, DATABASE)


def test_a_database_found_empty_is_emptied_and_filled_again_keeping_the_database(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(fidelity_source, DATABASE, OBJECTS_SQL + EXTRAS_SQL, C_LOCALE)
    before = user_database(fidelity_target)
    job = init_job(fidelity_source, fidelity_target, DATABASE, enable_sync=False)

    first = run_pg_engine(job)
    assert first.returncode == 0, first.text
    recorded = checkpoints(first.parsed)
    # Found empty is recorded after the check, before the copy writes: then the copy finishes.
    assert [(e.state, e.created, e.found_empty) for e in recorded] == [
        (CheckpointState.COPYING, False, False),
        (CheckpointState.COPYING, False, True),
        (CheckpointState.DONE, False, True),
    ]

    second = run_pg_engine(dataclasses.replace(job, checkpoint=lost_before_done(recorded[-1])))
    assert second.returncode == 0, second.text
    assert f"emptied target database {DATABASE}, left half copied by an earlier attempt" in second.text
    assert differences(snapshot(fidelity_source, DATABASE), snapshot(fidelity_target, DATABASE)) == []
    assert database_row(fidelity_target, DATABASE) == before


UNCHECKED = [
    pytest.param({}, id="no-entry"),
    pytest.param({DATABASE: DatabaseCheckpoint(key="k", state=CheckpointState.COPYING)}, id="copying"),
    pytest.param(
        {DATABASE: DatabaseCheckpoint(key="other", state=CheckpointState.DONE)}, id="done-other-key"
    ),
]


@pytest.mark.parametrize("checkpoint", UNCHECKED)
def test_a_user_database_this_job_did_not_find_empty_is_refused_untouched(
    fidelity_source: LocalPostgres,
    fidelity_target: LocalPostgres,
    checkpoint: dict[str, DatabaseCheckpoint],
) -> None:
    create_database(fidelity_source, DATABASE, OBJECTS_SQL, C_LOCALE)
    before = user_database(fidelity_target, USERS_TABLE_SQL)
    job = init_job(fidelity_source, fidelity_target, DATABASE, enable_sync=False)

    run = run_pg_engine(dataclasses.replace(job, checkpoint=checkpoint))
    assert_refused_untouched(run, fidelity_target, before)


USERS_TABLE_SQL = "CREATE TABLE mine (id int); INSERT INTO mine VALUES (7);"


def assert_refused_untouched(run: EngineRun, target: LocalPostgres, before: tuple[int, str]) -> None:
    """The run refused the user's database (made by `user_database(target, USERS_TABLE_SQL)`)."""
    assert run.returncode != 0
    assert f"target database {DATABASE} already exists and is not empty" in run.text
    assert "emptied" not in run.text
    assert database_row(target, DATABASE) == before
    # As table_fingerprints computes it: the md5 of the rows as text.
    assert table_fingerprints(target.url(DATABASE)) == {
        "public.mine": (1, hashlib.md5(b"(7)").hexdigest())  # noqa: S324
    }


def test_drop_existing_still_replaces_a_non_empty_user_database(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(fidelity_source, DATABASE, OBJECTS_SQL, C_LOCALE)
    before = user_database(fidelity_target, "CREATE TABLE mine (id int); INSERT INTO mine VALUES (7);")
    job = init_job(fidelity_source, fidelity_target, DATABASE, enable_sync=False, drop_existing=True)

    run = run_pg_engine(job)
    assert run.returncode == 0, run.text
    assert f"dropped existing target database {DATABASE}" in run.text
    assert [(e.created, e.found_empty) for e in checkpoints(run.parsed)] == [(True, False), (True, False)]
    assert differences(snapshot(fidelity_source, DATABASE), snapshot(fidelity_target, DATABASE)) == []
    assert database_row(fidelity_target, DATABASE)[0] != before[0]

    # Its next attempt drops what this job made, as before.
    again = run_pg_engine(dataclasses.replace(job, checkpoint=lost_before_done(checkpoints(run.parsed)[-1])))
    assert again.returncode == 0, again.text
    assert f"dropped target database {DATABASE}, left half copied by an earlier attempt" in again.text
    assert differences(snapshot(fidelity_source, DATABASE), snapshot(fidelity_target, DATABASE)) == []


def test_with_sync_the_emptied_database_ends_with_one_slot_publication_and_subscription(
    source: LocalPostgres, target: LocalPostgres
) -> None:
    database = "shop"
    with psycopg.connect(target.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    job = init_job(source, target, database)
    try:
        first = run_pg_engine(job)
        assert first.returncode == 0, first.text
        entry = checkpoints(first.parsed)[-1]
        assert entry.found_empty and not entry.created

        again = run_pg_engine(dataclasses.replace(job, checkpoint=lost_before_done(entry, database)))
        assert again.returncode == 0, again.text
        assert f"emptied target database {database}" in again.text
        name = replication_name(database, parse_url(job.target_url))
        assert [s for s in slots(source) if s.startswith("seren_shop")] == [name]
        assert list(publications(source, database)) == [name]
        assert subscriptions(target, database) == [name]
        assert_synced(source, target, database)
    finally:
        drop_publications(source)


def subscriptions(server: LocalPostgres, database: str) -> list[str]:
    with psycopg.connect(server.url(database), autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT subname FROM pg_subscription").fetchall()]


def assert_synced(source: LocalPostgres, target: LocalPostgres, database: str) -> None:
    """A row written on the source after the copy arrives on the target, and nothing else differs."""
    with psycopg.connect(source.url(database), autocommit=True) as conn:
        conn.execute("INSERT INTO inventory.products VALUES ('sku-after', 'after the resume', NULL)")
    try:
        deadline = time.monotonic() + 30
        while table_fingerprints(target.url(database)) != table_fingerprints(source.url(database)):
            assert time.monotonic() < deadline, "the row written after the copy did not arrive"
            time.sleep(0.2)
    finally:
        with psycopg.connect(source.url(database), autocommit=True) as conn:
            conn.execute("DELETE FROM inventory.products WHERE sku = 'sku-after'")


# What a user may have put into their database, besides relations, functions, types, schemas
# and extensions: each makes it not empty (a retry would drop it with the copy's objects).
USERS_OWN = [
    pytest.param("CREATE COLLATION mine (provider = libc, locale = 'C')", id="collation"),
    pytest.param("CREATE TEXT SEARCH CONFIGURATION mine (COPY = simple)", id="text-search-configuration"),
    pytest.param("CREATE OPERATOR <=> (leftarg = int, rightarg = int, function = int4eq)", id="operator"),
    pytest.param("CREATE CONVERSION mine FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8", id="conversion"),
    pytest.param("CREATE OPERATOR FAMILY mine USING btree", id="operator-family"),
    pytest.param("CREATE CAST (text AS int4) WITH INOUT", id="cast"),
    pytest.param("CREATE FOREIGN DATA WRAPPER mine", id="foreign-data-wrapper"),
]


@pytest.mark.parametrize("users_own", USERS_OWN)
def test_a_user_database_holding_only_other_objects_is_not_empty_and_stays_untouched(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres, users_own: str
) -> None:
    create_database(fidelity_source, DATABASE, "CREATE TABLE t (id int); INSERT INTO t VALUES (1);", C_LOCALE)
    user_database(fidelity_target, users_own)
    before = objects_outside_relations(fidelity_target)
    job = init_job(fidelity_source, fidelity_target, DATABASE, enable_sync=False)

    run = run_pg_engine(job)
    assert run.returncode != 0
    assert f"target database {DATABASE} already exists and is not empty" in run.text
    assert not any(e.found_empty for e in checkpoints(run.parsed))
    assert objects_outside_relations(fidelity_target) == before != []


def objects_outside_relations(server: LocalPostgres) -> list[str]:
    """Every object made after initdb that is neither a relation nor in a system schema."""
    with psycopg.connect(server.url(DATABASE), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_describe_object(classid, objid, 0) FROM ("
            " SELECT 'pg_collation'::regclass AS classid, oid AS objid FROM pg_collation"
            " UNION ALL SELECT 'pg_ts_config'::regclass, oid FROM pg_ts_config"
            " UNION ALL SELECT 'pg_operator'::regclass, oid FROM pg_operator"
            " UNION ALL SELECT 'pg_conversion'::regclass, oid FROM pg_conversion"
            " UNION ALL SELECT 'pg_opfamily'::regclass, oid FROM pg_opfamily"
            " UNION ALL SELECT 'pg_cast'::regclass, oid FROM pg_cast"
            " UNION ALL SELECT 'pg_foreign_data_wrapper'::regclass, oid FROM pg_foreign_data_wrapper"
            ") o WHERE objid >= 16384 ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def test_a_copy_holding_casts_and_foreign_servers_is_emptied_and_filled_again(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    """Objects outside any schema: a cast between the system's types, a foreign-data wrapper
    with its server. Left by the emptying, the next copy would fail creating them again."""
    create_database(
        fidelity_source,
        DATABASE,
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1);"
        "CREATE CAST (text AS int4) WITH INOUT;"
        'CREATE FOREIGN DATA WRAPPER "Wrapper; x"; CREATE SERVER far FOREIGN DATA WRAPPER "Wrapper; x";',
        C_LOCALE,
    )
    before = user_database(fidelity_target)
    job = init_job(fidelity_source, fidelity_target, DATABASE, enable_sync=False)
    first = run_pg_engine(job)
    assert first.returncode == 0, first.text

    lost = lost_before_done(checkpoints(first.parsed)[-1])
    second = run_pg_engine(dataclasses.replace(job, checkpoint=lost))
    assert second.returncode == 0, second.text
    assert f"emptied target database {DATABASE}" in second.text
    assert differences(snapshot(fidelity_source, DATABASE), snapshot(fidelity_target, DATABASE)) == []
    assert database_row(fidelity_target, DATABASE) == before


def test_a_database_the_user_recreated_after_the_loss_is_not_emptied(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    """The checkpoint says found empty of the database this job filled: one the user dropped
    and made again (with rows of their own) in the meantime is theirs, refused untouched."""
    create_database(fidelity_source, DATABASE, OBJECTS_SQL, C_LOCALE)
    user_database(fidelity_target)
    job = init_job(fidelity_source, fidelity_target, DATABASE, enable_sync=False)
    first = run_pg_engine(job)
    assert first.returncode == 0, first.text
    assert checkpoints(first.parsed)[-1].found_empty

    before = user_database(fidelity_target, USERS_TABLE_SQL)
    run = run_pg_engine(dataclasses.replace(job, checkpoint=lost_before_done(checkpoints(first.parsed)[-1])))
    assert_refused_untouched(run, fidelity_target, before)
