"""The copy's parts: tables split into block ranges cover every row exactly once; splitting,
the whole-table paths and ANALYZE leave the target equal to the source."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
from engine_helpers import SOURCE_PASSWORD, engine_job, run_pg_engine, table_fingerprints
from psycopg import sql

from jobs.spec import Command
from jobs.urls import parse_url
from local_cloud.postgres import LocalPostgres, start_postgres
from worker.engines.pg import catalog
from worker.engines.pg.copy import SMALL_TABLE_BYTES, CopyPart, plan_parts, snapshot_connection

pytestmark = pytest.mark.postgres

DATABASE = "bulk"
MB = 1 << 20

# Tables over 1 MB with what a range split could get wrong: dead and moved row versions,
# no key at all with duplicate rows, NULLs and extreme values, a generated and a dropped
# column, an inheritance parent whose child must not be read with it, a partition.
BULK_SQL = """
CREATE TABLE keyed (id bigint PRIMARY KEY, n int, v text, code int, tag text,
    CONSTRAINT keyed_code_key UNIQUE (code) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT keyed_tag_key UNIQUE NULLS NOT DISTINCT (tag) WITH (fillfactor = 80));
INSERT INTO keyed SELECT g, CASE WHEN g % 5 = 0 THEN NULL ELSE g END, repeat('k', 60) || g, g, 't' || g
    FROM generate_series(1, 30000) g;
INSERT INTO keyed VALUES (-9223372036854775808, -2147483648, NULL, NULL, NULL),
    (9223372036854775807, 2147483647, '', NULL, ''),
    (0, 0, E'tab\\there, newline\\n, backslash \\\\ and quote ''', -1, 'edge');
CREATE TABLE keyed_ref (keyed_id bigint REFERENCES keyed (id), tag text REFERENCES keyed (tag));
INSERT INTO keyed_ref SELECT g, 't' || g FROM generate_series(1, 30000, 3) g WHERE g % 7 <> 0;
DELETE FROM keyed WHERE id % 7 = 0;
UPDATE keyed SET v = v || ' moved' WHERE id % 11 = 0;
CREATE TABLE nokey (a int, b text);
INSERT INTO nokey SELECT g % 100, CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('d', 50) END
    FROM generate_series(1, 30000) g;
INSERT INTO nokey VALUES (NULL, NULL), (NULL, NULL);
CREATE TABLE shaped (a int, dropped text, b int GENERATED ALWAYS AS (a * 2) STORED, c text);
INSERT INTO shaped (a, dropped, c) SELECT g, 'gone', repeat('s', 40) FROM generate_series(1, 30000) g;
ALTER TABLE shaped DROP COLUMN dropped;
CREATE TABLE parent (id int, body text);
CREATE TABLE child (extra int) INHERITS (parent);
INSERT INTO parent SELECT g, repeat('p', 60) FROM generate_series(1, 20000) g;
INSERT INTO child SELECT g, repeat('c', 60), g FROM generate_series(1, 20000) g;
CREATE TABLE measures (id int, at date, v text) PARTITION BY RANGE (at);
CREATE TABLE measures_old PARTITION OF measures FOR VALUES FROM ('2000-01-01') TO ('2024-01-01');
CREATE TABLE measures_new PARTITION OF measures FOR VALUES FROM ('2024-01-01') TO ('2100-01-01');
INSERT INTO measures SELECT g, '2024-01-01'::date + g % 400 - 200, repeat('m', 60)
    FROM generate_series(1, 30000) g;
CREATE INDEX measures_v_idx ON measures (upper(v));
"""


@pytest.fixture(scope="module")
def bulk_source() -> Iterator[LocalPostgres]:
    server = start_postgres(password=SOURCE_PASSWORD)
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        with psycopg.connect(server.url(DATABASE), autocommit=True) as conn:
            conn.execute(BULK_SQL)  # type: ignore[arg-type]
        yield server
    finally:
        server.stop()


def rows(conn: psycopg.Connection, statement: sql.Composable) -> Counter[bytes]:
    with conn.cursor().copy(statement) as copy:
        return Counter(bytes(row) for row in copy)


def test_block_ranges_cover_every_row_exactly_once(bulk_source: LocalPostgres) -> None:
    url = parse_url(bulk_source.url(DATABASE))
    with psycopg.connect(bulk_source.url(DATABASE)) as conn:
        tables = catalog.list_tables(conn)
        snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        with snapshot_connection(url, DATABASE, snapshot) as reader:
            parts = plan_parts(reader, tables, split_bytes=MB)
            by_table: dict[str, list[CopyPart]] = {}
            for part in parts:
                by_table.setdefault(part.table.name, []).append(part)
            expected = {"keyed", "nokey", "shaped", "parent", "child", "measures_old", "measures_new"}
            assert expected <= set(by_table)
            assert "measures" not in by_table  # a partitioned parent has no rows of its own
            assert len(by_table.pop("keyed_ref")) == 1  # under the threshold: whole
            for name, table_parts in by_table.items():
                table = table_parts[0].table
                assert len(table_parts) > 1, name
                assert all(p.is_range for p in table_parts), name
                # Contiguous block ranges from block 0, the last one open-ended.
                ordered = sorted(table_parts, key=lambda p: p.first_block)
                assert ordered[0].first_block == 0 and ordered[-1].end_block is None, name
                for left, right in itertools.pairwise(ordered):
                    assert left.end_block == right.first_block, name
                whole = rows(
                    reader,
                    sql.SQL("COPY (SELECT {} FROM ONLY {}) TO STDOUT").format(
                        sql.SQL(", ").join(map(sql.Identifier, table_parts[0].columns)), table.ident
                    ),
                )
                combined: Counter[bytes] = Counter()
                for part in table_parts:
                    combined.update(rows(reader, part.copy_out("(FORMAT text)")))
                assert combined == whole, name
                assert whole.total() >= 15000, name
            # No generated or dropped column is read; the parent is read without its child.
            assert by_table["shaped"][0].columns == ("a", "c")
            parent_rows = sum(rows(reader, p.copy_out("(FORMAT text)")).total() for p in by_table["parent"])
            assert parent_rows == 20000


def test_last_range_is_open_ended(bulk_source: LocalPostgres) -> None:
    """Rows in blocks added after the plan still land in exactly one range."""
    with psycopg.connect(bulk_source.url(DATABASE), autocommit=True) as conn:
        conn.execute("CREATE TABLE growing (id int, pad text)")
        conn.execute("INSERT INTO growing SELECT g, repeat('g', 100) FROM generate_series(1, 20000) g")
        growing = [t for t in catalog.list_tables(conn) if t.name == "growing"]
        parts = plan_parts(conn, growing, split_bytes=MB)
        conn.execute("INSERT INTO growing SELECT g, repeat('h', 100) FROM generate_series(20001, 40000) g")
        try:
            counts = [sum(rows(conn, p.copy_out("(FORMAT text)")).values()) for p in parts]
            assert len(parts) > 1 and sum(counts) == 40000
        finally:
            conn.execute("DROP TABLE growing")


def test_no_split_below_threshold_or_when_off(bulk_source: LocalPostgres) -> None:
    with psycopg.connect(bulk_source.url(DATABASE)) as conn:
        tables = catalog.list_tables(conn)
        for split_bytes in (0, 64 * MB):
            parts = plan_parts(conn, tables, split_bytes)
            assert not any(p.is_range for p in parts)
            assert [p.table for p in parts] == [t for t in tables if t.kind == "r"]  # largest first
            assert all(p.in_process for p in parts)  # every table here is small


def constraints_and_indexes(url: str) -> set[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace"
        ).fetchall()
        indexes = conn.execute(
            "SELECT indrelid::regclass::text, indexrelid::regclass::text, pg_get_indexdef(indexrelid) "
            "FROM pg_index JOIN pg_class c ON c.oid = indrelid WHERE c.relnamespace = 'public'::regnamespace"
        ).fetchall()
    return {(r[0], r[1], r[2]) for r in constraints + indexes}


def analyzed(url: str) -> dict[str, bool]:
    with psycopg.connect(url) as conn:
        leaves = dict(
            conn.execute("SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables").fetchall()
        )
        parents = conn.execute(
            "SELECT count(*) FROM pg_stats WHERE tablename = 'measures' AND inherited"
        ).fetchone()
    assert parents is not None
    return {**leaves, "measures": parents[0] > 0}


@pytest.mark.parametrize(
    ("split_mb", "expect_ranges"),
    [("1", True), ("0", False)],
    ids=["split", "whole-tables"],
)
def test_init_copies_split_and_whole_tables_faithfully(
    bulk_source: LocalPostgres, target: LocalPostgres, split_mb: str, expect_ranges: bool
) -> None:
    if not expect_ranges:
        # One table large enough to go through psql whole rather than through the worker's connections.
        rows_needed = SMALL_TABLE_BYTES // 100 + 20000
        with psycopg.connect(bulk_source.url(DATABASE), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS wide")
            conn.execute(
                "CREATE TABLE wide AS SELECT g AS id, repeat('w', 90) AS pad FROM generate_series(1, %s) g",
                [rows_needed],
            )
    try:
        run = run_pg_engine(
            engine_job(Command.INIT, bulk_source.url(), target.url(), {"include_databases": [DATABASE]}),
            extra_env={"PG_ENGINE_SPLIT_MB": split_mb, "PG_ENGINE_JOBS": "3"},
        )
        assert run.returncode == 0, run.text
        assert ("block ranges in parallel" in run.stderr) is expect_ranges
        # Bytes copied through psql are counted too (read from the reader's /proc entry).
        assert max(p.bytes_copied or 0 for p in run.progress) > SMALL_TABLE_BYTES
        assert table_fingerprints(target.url(DATABASE)) == table_fingerprints(bulk_source.url(DATABASE))
        # Keys built as unique indexes first are the same constraints; the foreign keys found them.
        keys = constraints_and_indexes(bulk_source.url(DATABASE))
        assert constraints_and_indexes(target.url(DATABASE)) == keys
        statistics = analyzed(target.url(DATABASE))
        assert statistics and all(statistics.values()), statistics
        assert f"analyzed {len(statistics)} tables" in run.stderr  # leaves and the partitioned parent
        verified = run_pg_engine(
            engine_job(Command.VERIFY, bulk_source.url(), target.url(), {"include_databases": [DATABASE]})
        )
        assert verified.returncode == 0, verified.text
    finally:
        with psycopg.connect(bulk_source.url(DATABASE), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS wide")
