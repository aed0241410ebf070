"""The judge itself: two equal databases have no difference, and each kind of tamper is one."""

from __future__ import annotations

import psycopg
import pytest

from local_cloud.postgres import LocalPostgres
from tests.engines.engine_helpers import create_database, reset_target
from tests.oracle.differential import restore_reference
from tests.oracle.judge import Scope, differences, snapshot

pytestmark = pytest.mark.postgres


def stamp(comment: str = "keeps the note", search_path: str = "pg_catalog", literal: str = "a  b") -> str:
    """A trigger function whose body has a comment line, a SET line and a literal with spaces in it."""
    return (
        "CREATE OR REPLACE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $body$\nBEGIN\n"
        f"-- {comment}\nSET LOCAL search_path = {search_path};\nNEW.note := '{literal}';\n"
        "RETURN NEW;\nEND\n$body$"
    )


SCRIPT = r"""
DO $$ BEGIN CREATE ROLE oracle_judge_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE TABLE pairs (id int PRIMARY KEY, b int, c int, note text);
INSERT INTO pairs SELECT g, g * 10, g * 100, E'line\nnext\t' || g FROM generate_series(1, 50) g;
GRANT SELECT ON pairs TO oracle_judge_reader;
{stamp};
CREATE TRIGGER stamp BEFORE INSERT ON pairs FOR EACH ROW EXECUTE FUNCTION stamp();
CREATE SEQUENCE counter;
SELECT setval('counter', 7);
SELECT lo_from_bytea(4242, 'large');
COMMENT ON LARGE OBJECT 4242 IS 'a large object';
ALTER DATABASE judged SET work_mem = '8MB';
COMMENT ON DATABASE judged IS 'judged';
""".replace("{stamp}", stamp())

TAMPERS = {
    "a SET line in a function body": (stamp(search_path="public"), "stamp"),
    "a comment in a function body": (stamp(comment="keeps a note"), "stamp"),
    "whitespace in a string literal": (stamp(literal="a b"), "stamp"),
    "two values swapped between columns": (
        "UPDATE pairs SET b = c, c = b WHERE id = 3",
        "table public.pairs",
    ),
    "a revoked grant": ("REVOKE SELECT ON pairs FROM oracle_judge_reader", "pairs"),
    "a column grant": ("GRANT UPDATE (note) ON pairs TO oracle_judge_reader", "pairs"),
    "a sequence's state": ("SELECT nextval('counter')", "sequence public.counter"),
    "a large object's content": ("SELECT lo_put(4242, 0, 'L')", "large object 4242"),
    "a large object's comment": ("COMMENT ON LARGE OBJECT 4242 IS 'another'", "large object 4242"),
    "a large object's grant": (
        "GRANT SELECT ON LARGE OBJECT 4242 TO oracle_judge_reader",
        "large object 4242",
    ),
    "a database setting": ("ALTER DATABASE tampered SET work_mem = '9MB'", "database settings"),
    "the database comment": ("COMMENT ON DATABASE tampered IS 'other'", "database comment"),
    "the connection limit": ("ALTER DATABASE tampered CONNECTION LIMIT 5", "database"),
}


@pytest.fixture(scope="module")
def judged(oracle_source: LocalPostgres, reference_server: LocalPostgres) -> LocalPostgres:
    create_database(oracle_source, "judged", SCRIPT)
    reset_target(reference_server)
    restore_reference(oracle_source, reference_server, "judged", copy_roles=True)
    return reference_server


def test_a_faithful_restore_has_no_difference(oracle_source: LocalPostgres, judged: LocalPostgres) -> None:
    scope = Scope(owners=False)
    assert differences(snapshot(oracle_source, "judged", scope), snapshot(judged, "judged", scope)) == []


@pytest.mark.parametrize("tamper", TAMPERS, ids=list(TAMPERS))
def test_each_tamper_is_a_difference(judged: LocalPostgres, tamper: str) -> None:
    """A copy of the restored database (CREATE DATABASE ... TEMPLATE) judged before and after one change."""
    statement, named = TAMPERS[tamper]
    with psycopg.connect(judged.url(), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS tampered")
        conn.execute("CREATE DATABASE tampered TEMPLATE judged")
    scope = Scope(owners=False)
    before = snapshot(judged, "tampered", scope)
    with psycopg.connect(judged.url("tampered"), autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]
    found = differences(before, snapshot(judged, "tampered", scope))
    assert found, tamper
    assert all(named in line for line in found), found
