"""The pg engine against real PostgreSQL servers: init, verify, validate, sync, status."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil
import psycopg
import pytest
from engine_helpers import (
    SOURCE_DATABASES,
    SOURCE_PASSWORD,
    TARGET_PASSWORD,
    engine_job,
    run_pg_engine,
    table_fingerprints,
)

from jobs.spec import Command
from local_cloud.postgres import LocalPostgres
from worker.engines import PgEngine, summarize_failure

pytestmark = pytest.mark.postgres


def target_databases(server: LocalPostgres) -> set[str]:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate").fetchall()
    return {r[0] for r in rows} - {"postgres"}


def catalog_counts(url: str) -> tuple[int, int]:
    """(indexes, foreign keys + checks + uniques) in user schemas."""
    with psycopg.connect(url) as conn:
        indexes = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
        constraints = conn.execute(
            "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
    assert indexes and constraints
    return indexes[0], constraints[0]


def assert_no_password(text: str) -> None:
    assert SOURCE_PASSWORD not in text
    assert TARGET_PASSWORD not in text


def test_init_makes_target_equal_and_verify_catches_a_changed_row(
    source: LocalPostgres, target: LocalPostgres
) -> None:
    run = run_pg_engine(engine_job(Command.INIT, source.url(), target.url(), enable_sync=False))
    assert run.returncode == 0, run.text
    assert_no_password(run.text)

    # Every non-template database except the maintenance one, equal table by table.
    assert target_databases(target) == set(SOURCE_DATABASES)
    for name in SOURCE_DATABASES:
        assert table_fingerprints(target.url(name)) == table_fingerprints(source.url(name)), name
        assert catalog_counts(target.url(name)) == catalog_counts(source.url(name)), name

    with psycopg.connect(target.url("shop"), autocommit=True) as conn:
        # Sequences were carried over: new rows do not collide with copied ones.
        new_id = conn.execute(
            "INSERT INTO customers (name, email) VALUES ('new', 'new@example.test') RETURNING id"
        ).fetchone()
        assert new_id is not None and new_id[0] > 2000
        item = conn.execute("INSERT INTO order_items (order_id, sku, qty) VALUES (1, 's', 1) RETURNING id")
        assert item.fetchone()[0] > 12000  # type: ignore[index]
        # Foreign keys are enforced on the target.
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("INSERT INTO orders (customer_id) VALUES (999999)")
        assert conn.execute("SELECT profile->>'ünï', name FROM customers WHERE id = 7").fetchone() == (
            "çødé",
            "Zoë 7 東京 🚀",
        )
        conn.execute("DELETE FROM customers WHERE id = %s", [new_id[0]])
        conn.execute("DELETE FROM order_items WHERE sku = 's'")
        # Undo the probes' sequence steps too: verify compares sequences.
        conn.execute("SELECT setval('customers_id_seq', 2000), setval('order_items_id_seq', 12000)")
        conn.execute("SELECT setval('orders_id_seq', 6000)")

    with psycopg.connect(target.url("analytics"), autocommit=True) as conn:
        # Materialized views are refreshed; rows landed in the right partitions.
        assert conn.execute("SELECT sum(n) FROM kinds").fetchone() == (5000,)
        assert conn.execute("SELECT count(*) FROM ONLY metrics_2025").fetchone() == (1336,)

    progress = run.progress
    assert progress[-1].databases_completed == progress[-1].databases_total == 3
    assert progress[-1].percent == 100.0
    assert max(p.bytes_copied or 0 for p in progress) > 100_000
    assert any(p.current_database == "shop" and p.tables_total == 5 for p in progress)

    verified = run_pg_engine(engine_job(Command.VERIFY, source.url(), target.url()))
    assert verified.returncode == 0, verified.text
    assert "verify passed" in verified.progress[-1].message

    with psycopg.connect(target.url("shop"), autocommit=True) as conn:
        conn.execute("UPDATE inventory.products SET title = 'changed' WHERE sku = 'sku-42'")
    mismatch = run_pg_engine(engine_job(Command.VERIFY, source.url(), target.url()))
    assert mismatch.returncode == 1
    summary = summarize_failure(mismatch.parsed)
    assert "shop.inventory.products" in summary
    assert "customers" not in summary


def test_filters_and_drop_existing(source: LocalPostgres, target: LocalPostgres) -> None:
    first = run_pg_engine(
        engine_job(
            Command.INIT,
            source.url(),
            target.url(),
            {"include_databases": ["shop", "analytics"], "exclude_tables": ["shop.inventory.stock"]},
            enable_sync=False,
        )
    )
    assert first.returncode == 0, first.text
    assert target_databases(target) == {"shop", "analytics"}
    shop = table_fingerprints(target.url("shop"))
    assert "inventory.stock" not in shop
    assert shop["public.orders"] == table_fingerprints(source.url("shop"))["public.orders"]

    # The target now holds data: without drop_existing a second init must refuse.
    again = run_pg_engine(
        engine_job(
            Command.INIT, source.url(), target.url(), {"include_databases": ["shop"]}, enable_sync=False
        )
    )
    assert again.returncode == 1
    assert "drop_existing" in summarize_failure(again.parsed)

    # include_tables picks tables (db.table in any schema); drop_existing replaces the database.
    with psycopg.connect(target.url("analytics"), autocommit=True) as conn:
        conn.execute("CREATE TABLE leftover (x int)")
    replaced = run_pg_engine(
        engine_job(
            Command.INIT,
            source.url(),
            target.url(),
            {"include_tables": ["analytics.events", "shop.inventory.products"]},
            enable_sync=False,
            drop_existing=True,
        )
    )
    assert replaced.returncode == 0, replaced.text
    analytics = table_fingerprints(target.url("analytics"))
    assert set(analytics) == {"public.events"}
    assert analytics["public.events"] == table_fingerprints(source.url("analytics"))["public.events"]
    assert set(table_fingerprints(target.url("shop"))) == {"inventory.products"}


def test_validate_flags_wal_level(
    plain_source: LocalPostgres, source: LocalPostgres, target: LocalPostgres
) -> None:
    flagged = run_pg_engine(engine_job(Command.VALIDATE, plain_source.url(), target.url(), enable_sync=True))
    assert flagged.returncode == 1
    assert "wal_level" in summarize_failure(flagged.parsed)
    assert_no_password(flagged.text)

    without_sync = run_pg_engine(
        engine_job(Command.VALIDATE, plain_source.url(), target.url(), enable_sync=False)
    )
    assert without_sync.returncode == 0, without_sync.text

    passed = run_pg_engine(engine_job(Command.VALIDATE, source.url(), target.url()))
    assert passed.returncode == 0, passed.text
    message = passed.progress[-1].message
    assert "validation passed: 3 databases" in message

    # init with sync wanted on a non-logical source copies once and says sync was skipped.
    init = run_pg_engine(engine_job(Command.INIT, plain_source.url(), target.url(), enable_sync=True))
    assert init.returncode == 0, init.text
    assert "NOT set up" in init.progress[-1].message


def test_sync_carries_changes_after_init(source: LocalPostgres, target: LocalPostgres) -> None:
    job = engine_job(Command.INIT, source.url(), target.url(), {"include_databases": ["analytics"]})
    init = run_pg_engine(job)
    assert init.returncode == 0, init.text
    assert "continuous sync running" in init.progress[-1].message

    with psycopg.connect(source.url("analytics"), autocommit=True) as conn:
        conn.execute("INSERT INTO audit_log (message) VALUES ('after init ✓')")
    deadline = time.monotonic() + 20
    with psycopg.connect(target.url("analytics"), autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM audit_log WHERE message = 'after init ✓'").fetchone()
            if (row and row[0] == 1) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert row == (1,)

    # sync is idempotent: a rerun neither fails nor copies again.
    rerun = run_pg_engine(
        engine_job(Command.SYNC, source.url(), target.url(), {"include_databases": ["analytics"]})
    )
    assert rerun.returncode == 0, rerun.text
    status = run_pg_engine(
        engine_job(Command.STATUS, source.url(), target.url(), {"include_databases": ["analytics"]})
    )
    assert status.returncode == 0, status.text
    assert "analytics: streaming" in status.progress[-1].message
    assert table_fingerprints(target.url("analytics")) == table_fingerprints(source.url("analytics"))
    with psycopg.connect(source.url("analytics"), autocommit=True) as conn:
        conn.execute("DELETE FROM audit_log WHERE message = 'after init ✓'")


def test_old_pg_dump_is_refused_clearly(source: LocalPostgres, target: LocalPostgres) -> None:
    old = sorted(Path("/usr/lib/postgresql").glob("1[0-5]/bin"))
    if not old:
        pytest.skip("no PostgreSQL client older than 16 installed")
    run = run_pg_engine(
        engine_job(Command.INIT, source.url(), target.url(), enable_sync=False),
        extra_env={"PG_ENGINE_BIN_DIR": str(old[-1])},
    )
    assert run.returncode == 1
    assert "older than the source server" in summarize_failure(run.parsed)
    assert target_databases(target) == set()


def test_no_password_in_any_command_line_or_environment(source: LocalPostgres, target: LocalPostgres) -> None:
    """While the engine runs, /proc/<pid>/cmdline and /proc/<pid>/environ (the initial
    environment block, whatever the process popped since) of it and every child hold no
    password: the engine reads its inputs from stdin, its tools a 0600 password file."""
    engine = PgEngine()
    invocation = engine.invocation(engine_job(Command.INIT, source.url(), target.url()))
    proc = subprocess.Popen(
        invocation.argv,
        env={**os.environ, **invocation.env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdin is not None
    proc.stdin.write(invocation.stdin)
    proc.stdin.close()
    seen: set[str] = set()
    names: set[str] = set()
    while proc.poll() is None:
        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for child in family:
            try:
                cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes().decode(errors="replace")
                environ = Path(f"/proc/{child.pid}/environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            seen |= {cmdline, environ}
            names.add(Path(cmdline.split("\0")[0]).name)
        time.sleep(0.005)
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert proc.returncode == 0, output
    # Tables this small are copied through the engine's own connections; psql, which copies
    # large ones, gets the same environment-only credentials (tool_env).
    assert {"pg_dump", "pg_restore"} <= names, names
    for cmdline in seen:
        assert_no_password(cmdline)
    assert_no_password(output)


def test_failed_init_leaves_no_replication_slot(source: LocalPostgres, target: LocalPostgres) -> None:
    # Excluding a table that others reference makes the foreign keys fail at the very end,
    # after the slot for sync was created: the engine must drop it again.
    run = run_pg_engine(
        engine_job(
            Command.INIT,
            source.url(),
            target.url(),
            {"include_databases": ["shop"], "exclude_tables": ["shop.customers"]},
        )
    )
    assert run.returncode == 1
    assert "customers" in summarize_failure(run.parsed)
    assert_no_password(run.text)
    with psycopg.connect(source.url(), autocommit=True) as conn:
        assert conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall() == []
