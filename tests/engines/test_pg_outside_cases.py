"""Databases the engine's authors did not write, judged as pg_dump would be: each case once
left the target silently different from the source, and is now a faithful copy or a clear failure.

Every test copies databases of its own from `fidelity_source` and judges the target with
plain SQL (rows compared by column name), not with the engine's own `verify`.
"""

from __future__ import annotations

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
