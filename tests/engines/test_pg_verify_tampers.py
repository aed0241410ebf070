"""`verify` after a faithful copy passes, and fails on each change made to the target since.

A change that only a careless normalizer of `pg_dump` would miss: a function body's
line starting with `SET` or a comment inside it, whitespace inside a string literal, a
table moved to another tablespace; with `copy_roles` (which copies grants) a table or
column grant revoked or added, a large object's grants or owner; and a large object's
comment. Without `copy_roles` grants are not copied, so verify does not compare them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from engine_helpers import create_database, engine_job, reset_target, run_pg_engine
from judge import differences, snapshot
from psycopg import sql

from jobs.spec import Command
from local_cloud.postgres import LocalPostgres
from worker.engines import summarize_failure

pytestmark = pytest.mark.postgres

DATABASE = "tampered"
READER, WRITER, HOLDER = "vt_reader", "vt_writer", "vt_holder"

SOURCE_SQL = """
CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
CREATE TABLE notes (id int PRIMARY KEY, body text DEFAULT 'two  spaces', secret text);
INSERT INTO counters VALUES (1, 0);
INSERT INTO notes (id) SELECT g FROM generate_series(1, 20) g;
CREATE FUNCTION count_note() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    -- one more note
    UPDATE counters
    SET n = n + 1
    WHERE id = 1;
    RETURN NEW;
END
$body$;
CREATE TRIGGER notes_counted AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION count_note();
GRANT SELECT ON notes TO vt_reader;
GRANT UPDATE (body) ON notes TO vt_writer;
SELECT lo_from_bytea(5150, 'large object body'::bytea);
COMMENT ON LARGE OBJECT 5150 IS 'the manual';
GRANT SELECT ON LARGE OBJECT 5150 TO vt_reader;
"""

BODY_SQL = """
CREATE OR REPLACE FUNCTION count_note() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    -- {comment}
    UPDATE counters
    {set_line}
    WHERE id = 1;
    RETURN NEW;
END
$body$
"""


def body(comment: str = "one more note", set_line: str = "SET n = n + 1") -> str:
    return BODY_SQL.format(comment=comment, set_line=set_line)


def ensure_roles(server: LocalPostgres, *names: str) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        for name in names:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)))


def copy_once(source: LocalPostgres, target: LocalPostgres, **options: object) -> Iterator[LocalPostgres]:
    """The database copied once for a module's tests (each test undoes its change)."""
    reset_target(target)
    ensure_roles(source, READER, WRITER)
    create_database(source, DATABASE, SOURCE_SQL)
    job = engine_job(Command.INIT, source.url(), target.url(), {"include_databases": [DATABASE]}, **options)
    run = run_pg_engine(job)
    assert run.returncode == 0, run.text
    ensure_roles(target, HOLDER)
    yield target
    reset_target(target)


@pytest.fixture(scope="module")
def copied(fidelity_source: LocalPostgres, target_server: LocalPostgres) -> Iterator[LocalPostgres]:
    yield from copy_once(fidelity_source, target_server, enable_sync=False, copy_roles=True)


def verify(source: LocalPostgres, target: LocalPostgres, **options: object):
    return run_pg_engine(
        engine_job(Command.VERIFY, source.url(), target.url(), {"include_databases": [DATABASE]}, **options)
    )


def on_target(target: LocalPostgres, statement: str) -> None:
    with psycopg.connect(target.url(DATABASE), autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tablespace(copied: LocalPostgres) -> Iterator[str]:
    """A tablespace of the target only, in a directory the server's OS user owns."""
    location = copied.root / "tamper_space"
    location.mkdir()
    if copied.run_as is not None:
        os.chown(location, copied.run_as.pw_uid, copied.run_as.pw_gid)
    with psycopg.connect(copied.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLESPACE tamper_space LOCATION {}").format(sql.Literal(str(location))))
    yield "tamper_space"
    with psycopg.connect(copied.url(), autocommit=True) as conn:
        conn.execute("DROP TABLESPACE IF EXISTS tamper_space")


def test_a_faithful_copy_with_grants_verifies(fidelity_source: LocalPostgres, copied: LocalPostgres) -> None:
    run = verify(fidelity_source, copied, copy_roles=True)
    assert run.returncode == 0, run.text


# (name, tamper, undo, what the error must name); applied to the copy with copy_roles.
TAMPERS = [
    ("set-line-in-function-body", body(set_line="SET n = n + 2"), body(), "n = n + 2"),
    ("comment-in-function-body", body(comment="two more notes"), body(), "two more notes"),
    (
        "whitespace-in-string-literal",
        "ALTER TABLE notes ALTER COLUMN body SET DEFAULT 'two spaces'",
        "ALTER TABLE notes ALTER COLUMN body SET DEFAULT 'two  spaces'",
        "two spaces",
    ),
    (
        "table-grant-revoked",
        "REVOKE SELECT ON notes FROM vt_reader",
        "GRANT SELECT ON notes TO vt_reader",
        READER,
    ),
    (
        "table-grant-added",
        "GRANT DELETE ON notes TO vt_writer",
        "REVOKE DELETE ON notes FROM vt_writer",
        "DELETE",
    ),
    (
        "column-grant-revoked",
        "REVOKE UPDATE (body) ON notes FROM vt_writer",
        "GRANT UPDATE (body) ON notes TO vt_writer",
        WRITER,
    ),
    (
        "column-grant-added",
        "GRANT SELECT (secret) ON notes TO vt_writer",
        "REVOKE SELECT (secret) ON notes FROM vt_writer",
        "secret",
    ),
    (
        "large-object-comment",
        "COMMENT ON LARGE OBJECT 5150 IS 'another manual'",
        "COMMENT ON LARGE OBJECT 5150 IS 'the manual'",
        "5150",
    ),
    (
        "large-object-grant",
        "REVOKE SELECT ON LARGE OBJECT 5150 FROM vt_reader",
        "GRANT SELECT ON LARGE OBJECT 5150 TO vt_reader",
        "5150",
    ),
    ("large-object-owner", "ALTER LARGE OBJECT 5150 OWNER TO vt_holder", "", "5150"),
]


@pytest.mark.parametrize(("tamper", "undo", "named"), [t[1:] for t in TAMPERS], ids=[t[0] for t in TAMPERS])
def test_verify_fails_on_a_tampered_target(
    fidelity_source: LocalPostgres, copied: LocalPostgres, tamper: str, undo: str, named: str
) -> None:
    on_target(copied, tamper)
    try:
        run = verify(fidelity_source, copied, copy_roles=True)
    finally:
        with psycopg.connect(copied.url(DATABASE), autocommit=True) as conn:
            conn.execute(undo or f"ALTER LARGE OBJECT 5150 OWNER TO {copied.user}")  # type: ignore[arg-type]
    assert run.returncode == 1, run.text
    error = summarize_failure(run.parsed)
    assert "verify found" in error and named in error, error
    assert verify(fidelity_source, copied, copy_roles=True).returncode == 0


def test_verify_fails_on_a_table_moved_to_another_tablespace(
    fidelity_source: LocalPostgres, copied: LocalPostgres, tablespace: str
) -> None:
    on_target(copied, f"ALTER TABLE notes SET TABLESPACE {tablespace}")
    try:
        run = verify(fidelity_source, copied, copy_roles=True)
    finally:
        on_target(copied, "ALTER TABLE notes SET TABLESPACE pg_default")
    assert run.returncode == 1, run.text
    error = summarize_failure(run.parsed)
    assert "verify found" in error and tablespace in error, error


JUDGED = [
    (body(set_line="SET n = n + 2"), body()),
    (body(comment="two more notes"), body()),
    (TAMPERS[2][1], TAMPERS[2][2]),
    ("ALTER TABLE notes SET TABLESPACE tamper_space", "ALTER TABLE notes SET TABLESPACE pg_default"),
]


JUDGED_IDS = ["set-line-in-function-body", "comment-in-function-body", "whitespace", "tablespace"]


@pytest.mark.parametrize(("tamper", "undo"), JUDGED, ids=JUDGED_IDS)
def test_the_judge_sees_each_schema_tamper(
    fidelity_source: LocalPostgres, copied: LocalPostgres, tablespace: str, tamper: str, undo: str
) -> None:
    """The tests' own judge (judge.py) compares dumps as carefully as verify must."""
    assert differences(snapshot(fidelity_source, DATABASE), snapshot(copied, DATABASE)) == []
    on_target(copied, tamper)
    try:
        found = differences(snapshot(fidelity_source, DATABASE), snapshot(copied, DATABASE))
    finally:
        on_target(copied, undo)
    assert any(item.startswith("schema only on the right") for item in found), found


def test_without_copy_roles_grants_are_not_compared(
    fidelity_source: LocalPostgres, target_server: LocalPostgres
) -> None:
    """Grants are documented as not copied without copy_roles: a copy without them verifies."""
    for target in copy_once(fidelity_source, target_server, enable_sync=False):
        with psycopg.connect(target.url(DATABASE), autocommit=True) as conn:
            granted = conn.execute(
                "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = %s", [READER]
            ).fetchone()
        assert granted == (0,)
        run = verify(fidelity_source, target)
        assert run.returncode == 0, run.text
        # A function body changed is still found without copy_roles.
        on_target(target, body(set_line="SET n = n + 3"))
        run = verify(fidelity_source, target)
        assert run.returncode == 1 and "n = n + 3" in summarize_failure(run.parsed), run.text
