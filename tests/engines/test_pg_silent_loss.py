"""Each way the pg engine once lost or changed data without saying so: now a faithful copy or a clear failure.

Every test copies one database of its own from `fidelity_source` and judges the target
with plain SQL, not with the engine's own `verify`.
"""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from engine_helpers import (
    create_database,
    engine_job,
    publications,
    run_pg_engine,
    slots,
    table_fingerprints,
)

from jobs.spec import Command
from local_cloud.postgres import LocalPostgres
from worker.engines import summarize_failure

pytestmark = pytest.mark.postgres


def on_database(
    command: Command, source: LocalPostgres, target: LocalPostgres, database: str, **options: object
):
    """Run `command` on one database; init copies without sync unless told otherwise."""
    if command is Command.INIT:
        options.setdefault("enable_sync", False)
    return run_pg_engine(
        engine_job(command, source.url(), target.url(), {"include_databases": [database]}, **options)
    )


def init(source: LocalPostgres, target: LocalPostgres, database: str, **options: object):
    return on_database(Command.INIT, source, target, database, **options)


def one(url: str, query: str) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0] if len(row) == 1 else tuple(row)


def test_rls_hidden_rows_fail_clearly_instead_of_copying_nothing(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source,
        "rls",
        """
        CREATE TABLE secret (id int PRIMARY KEY, owner text);
        INSERT INTO secret SELECT g, 'u' || g FROM generate_series(1, 100) g;
        ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
        CREATE POLICY mine ON secret USING (owner = current_user);
        DROP ROLE IF EXISTS rls_reader;
        CREATE ROLE rls_reader LOGIN PASSWORD 'rls-reader-test-pw' NOBYPASSRLS;
        GRANT SELECT ON secret TO rls_reader;
        """,
    )
    reader_url = f"postgresql://rls_reader:rls-reader-test-pw@127.0.0.1:{fidelity_source.port}/postgres"
    job = engine_job(
        Command.VALIDATE, reader_url, fidelity_target.url(), {"include_databases": ["rls"]}, enable_sync=False
    )
    validated = run_pg_engine(job)
    assert validated.returncode == 1
    assert "rls.public.secret" in summarize_failure(validated.parsed)
    assert "row-level security" in summarize_failure(validated.parsed)

    run = run_pg_engine(dataclasses.replace(job, command=Command.INIT))
    assert run.returncode == 1
    assert "public.secret" in summarize_failure(run.parsed)
    assert "row-level security" in summarize_failure(run.parsed)

    # The table owner's superuser copies every row.
    run = init(fidelity_source, fidelity_target, "rls")
    assert run.returncode == 0, run.text
    assert one(fidelity_target.url("rls"), "SELECT count(*) FROM secret") == 100


def test_include_tables_on_a_parent_brings_its_partitions_and_children(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source,
        "parts",
        """
        CREATE TABLE measures (at date NOT NULL, v int) PARTITION BY RANGE (at);
        CREATE TABLE measures_a PARTITION OF measures FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
        CREATE TABLE measures_b PARTITION OF measures FOR VALUES FROM ('2024-07-01') TO ('2025-01-01')
            PARTITION BY RANGE (at);
        CREATE TABLE measures_b1 PARTITION OF measures_b FOR VALUES FROM ('2024-07-01') TO ('2025-01-01');
        INSERT INTO measures SELECT '2024-01-01'::date + g, g FROM generate_series(0, 199) g;
        CREATE TABLE animals (name text);
        CREATE TABLE dogs (barks bool) INHERITS (animals);
        INSERT INTO animals VALUES ('generic');
        INSERT INTO dogs VALUES ('rex', true), ('fido', false);
        CREATE TABLE unrelated (x int);
        """,
    )
    run = run_pg_engine(
        engine_job(
            Command.INIT,
            fidelity_source.url(),
            fidelity_target.url(),
            {"include_tables": ["parts.measures", "parts.public.animals"]},
            enable_sync=False,
        )
    )
    assert run.returncode == 0, run.text
    copied = table_fingerprints(fidelity_target.url("parts"))
    assert set(copied) == {
        "public.measures",
        "public.measures_b",
        "public.measures_a",
        "public.measures_b1",
        "public.animals",
        "public.dogs",
    }
    assert copied == {
        k: v for k, v in table_fingerprints(fidelity_source.url("parts")).items() if k in copied
    }
    assert one(fidelity_target.url("parts"), "SELECT count(*) FROM measures") == 200
    assert one(fidelity_target.url("parts"), "SELECT count(*) FROM animals") == 3


def test_sequences_keep_last_value_and_is_called(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source,
        "seqs",
        """
        CREATE TABLE items (id serial PRIMARY KEY, v text);
        INSERT INTO items (id, v) SELECT g, 'v' FROM generate_series(1, 100) g;
        SELECT setval('items_id_seq', 101, false);
        CREATE SEQUENCE counted START 5 INCREMENT 3;
        SELECT nextval('counted'), nextval('counted');
        CREATE SEQUENCE untouched START 42;
        """,
    )
    run = init(fidelity_source, fidelity_target, "seqs")
    assert run.returncode == 0, run.text
    target = fidelity_target.url("seqs")
    for name in ("items_id_seq", "counted", "untouched"):
        query = f"SELECT last_value, is_called FROM {name}"  # noqa: S608 (fixed names)
        assert one(target, query) == one(fidelity_source.url("seqs"), query), name
    # The next insert on the target does not collide with a copied row.
    assert one(target, "INSERT INTO items (v) VALUES ('new') RETURNING id") == 101


def test_large_objects_arrive_with_their_content(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source,
        "blobs",
        """
        SELECT lo_from_bytea(4242, convert_to(repeat('large object content ', 5000), 'UTF8'));
        SELECT lo_from_bytea(4243, '\\x00ff00ff'::bytea);
        COMMENT ON LARGE OBJECT 4242 IS 'a commented blob';
        CREATE TABLE docs (id int PRIMARY KEY, body oid);
        INSERT INTO docs VALUES (1, 4242), (2, 4243);
        """,
    )
    run = init(fidelity_source, fidelity_target, "blobs")
    assert run.returncode == 0, run.text
    query = (
        "SELECT string_agg(oid::text || ':' || md5(lo_get(oid)), ',' ORDER BY oid) "
        "FROM pg_largeobject_metadata"
    )
    assert one(fidelity_target.url("blobs"), query) == one(fidelity_source.url("blobs"), query)
    assert one(fidelity_target.url("blobs"), "SELECT obj_description(4242, 'pg_largeobject')") == (
        "a commented blob"
    )


def test_database_locale_and_encoding_are_kept(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source,
        "c_locale",
        "CREATE TABLE words (s text, up text GENERATED ALWAYS AS (upper(s)) STORED);"
        "INSERT INTO words (s) VALUES ('é'), ('b'), ('A');",
        "TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'",
    )
    create_database(
        fidelity_source,
        "latin",
        "CREATE TABLE t (s text); INSERT INTO t VALUES (convert_from('\\xe9'::bytea, 'LATIN1'));",
        "TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'",
    )
    run = run_pg_engine(
        engine_job(
            Command.INIT,
            fidelity_source.url(),
            fidelity_target.url(),
            {"include_databases": ["c_locale", "latin"]},
            enable_sync=False,
        )
    )
    assert run.returncode == 0, run.text
    query = (
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype, datlocprovider "
        "FROM pg_database WHERE datname = current_database()"
    )
    for name in ("c_locale", "latin"):
        assert one(fidelity_target.url(name), query) == one(fidelity_source.url(name), query), name
    assert one(fidelity_target.url("c_locale"), "SELECT up FROM words WHERE s = 'é'") == "é"
    assert one(fidelity_target.url("latin"), "SELECT s FROM t") == "é"


def test_database_settings_and_comment_are_kept(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source,
        "settings",
        """
        CREATE SCHEMA app;
        CREATE TABLE app.things (id int);
        ALTER DATABASE settings SET search_path = app, "$user", public;
        ALTER DATABASE settings SET work_mem = '64MB';
        ALTER DATABASE settings SET app.tenant = 'it''s me';
        ALTER DATABASE settings CONNECTION LIMIT 77;
        COMMENT ON DATABASE settings IS 'the settings database';
        """,
    )
    run = init(fidelity_source, fidelity_target, "settings")
    assert run.returncode == 0, run.text
    query = (
        "SELECT array(SELECT unnest(setconfig) ORDER BY 1) FROM pg_db_role_setting s "
        "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'settings' AND s.setrole = 0"
    )
    assert one(fidelity_target.url(), query) == one(fidelity_source.url(), query)
    assert one(fidelity_target.url("settings"), "SELECT count(*) FROM things") == 0
    assert (
        one(
            fidelity_target.url(),
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'settings'",
        )
        == "the settings database"
    )
    assert one(fidelity_target.url(), "SELECT datconnlimit FROM pg_database WHERE datname = 'settings'") == 77


def test_verify_sees_a_changed_row_in_a_table_with_a_column_named_t(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source,
        "col_t",
        "CREATE TABLE odd (id int PRIMARY KEY, t int);"
        "INSERT INTO odd SELECT g, 1 FROM generate_series(1, 10) g;",
    )
    run = init(fidelity_source, fidelity_target, "col_t")
    assert run.returncode == 0, run.text
    with psycopg.connect(fidelity_target.url("col_t"), autocommit=True) as conn:
        conn.execute("UPDATE odd SET id = id + 100 WHERE id = 3")
    verified = on_database(Command.VERIFY, fidelity_source, fidelity_target, "col_t")
    assert verified.returncode == 1, verified.text
    assert "col_t.public.odd" in summarize_failure(verified.parsed)


def test_sync_after_a_plain_init_is_refused(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source, "later", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);"
    )
    run = init(fidelity_source, fidelity_target, "later")
    assert run.returncode == 0, run.text
    with psycopg.connect(fidelity_source.url("later"), autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    synced = on_database(Command.SYNC, fidelity_source, fidelity_target, "later")
    assert synced.returncode == 1, synced.text
    assert "init" in summarize_failure(synced.parsed)
    assert slots(fidelity_source) == []
    assert publications(fidelity_source, "later") == {}


def test_sync_publishes_only_replicated_tables_and_refuses_tables_without_replica_identity(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    create_database(
        fidelity_source,
        "pubs",
        """
        CREATE TABLE keyed (id int PRIMARY KEY, v text);
        CREATE TABLE nopk_log (message text);
        CREATE TABLE parted (id int, at date) PARTITION BY RANGE (at);
        CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        INSERT INTO keyed VALUES (1, 'a'); INSERT INTO nopk_log VALUES ('m');
        INSERT INTO parted VALUES (1, '2024-02-02');
        """,
    )
    validated = on_database(Command.VALIDATE, fidelity_source, fidelity_target, "pubs")
    assert validated.returncode == 1
    summary = summarize_failure(validated.parsed)
    assert "pubs.public.nopk_log" in summary and "pubs.public.parted_a" in summary
    assert "REPLICA IDENTITY" in summary and "keyed" not in summary

    refused = init(fidelity_source, fidelity_target, "pubs", enable_sync=True)
    assert refused.returncode == 1
    assert "nopk_log" in summarize_failure(refused.parsed)
    assert publications(fidelity_source, "pubs") == {} and slots(fidelity_source) == []

    # Leaving them out, the publication holds exactly the replicated table and the source
    # keeps accepting UPDATE and DELETE on the others.
    run = run_pg_engine(
        engine_job(
            Command.INIT,
            fidelity_source.url(),
            fidelity_target.url(),
            {"include_tables": ["pubs.keyed"]},
        )
    )
    assert run.returncode == 0, run.text
    assert list(publications(fidelity_source, "pubs").values()) == [{"public.keyed"}]
    with psycopg.connect(fidelity_source.url("pubs"), autocommit=True) as conn:
        conn.execute("UPDATE nopk_log SET message = 'changed'")
        conn.execute("DELETE FROM parted")

    # A re-init without sync removes the earlier sync's slot and publication.
    again = init(fidelity_source, fidelity_target, "pubs", drop_existing=True)
    assert again.returncode == 0, again.text
    assert slots(fidelity_source) == []
    assert publications(fidelity_source, "pubs") == {}


def test_a_late_failure_leaves_no_slot_or_publication_and_names_its_cause(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    # The index's function needs a database setting, which init applies only at the end:
    # the index build fails in post-data, after the slot and publication for sync exist.
    create_database(
        fidelity_source,
        "late",
        """
        SET app.allow = 'yes';
        CREATE FUNCTION checked(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
        BEGIN
            IF current_setting('app.allow', true) IS DISTINCT FROM 'yes' THEN
                RAISE EXCEPTION 'app.allow is not set';
            END IF;
            RETURN x;
        END $$;
        CREATE TABLE t (id int PRIMARY KEY);
        INSERT INTO t SELECT generate_series(1, 10);
        CREATE INDEX t_checked_idx ON t (checked(id));
        ALTER DATABASE late SET app.allow = 'yes';
        """,
    )
    # The source's own function fails the index build: a trusted source, or init refuses first.
    run = init(fidelity_source, fidelity_target, "late", enable_sync=True, trust_source_code=True)
    assert run.returncode == 1, run.text
    assert "app.allow is not set" in summarize_failure(run.parsed)
    assert slots(fidelity_source) == []
    assert publications(fidelity_source, "late") == {}
