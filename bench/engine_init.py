"""Throughput of the pg engine's `init` against serial `pg_dump | pg_restore` and pgcopydb.

    .venv/bin/python bench/engine_init.py [--size-mb 1024] [--tables 24] [--workers N]

Generates a database of about --size-mb on a throwaway source server (24 tables of mixed
sizes, each with a primary key and two secondary indexes), then copies it to a throwaway
target three ways, one after the other on the same servers: the pg engine, a serial
`pg_dump -Fc | pg_restore`, and `pgcopydb clone` when pgcopydb is on PATH. MB/s is the
source database size (pg_database_size) over wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from psycopg import sql

from jobs.spec import Command, JobOptions
from local_cloud.postgres import LocalPostgres, bin_dir, start_postgres
from worker.engines import EngineJob, PgEngine

DATABASE = "benchdb"
# Bytes a generated row takes on disk with its share of indexes (measured, roughly).
ROW_BYTES = 260


def generate(server: LocalPostgres, size_mb: int, tables: int) -> int:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    weights = [1 + (i % 6) for i in range(tables)]
    total_rows = size_mb * 1_000_000 // ROW_BYTES

    def fill(index: int) -> None:
        rows = total_rows * weights[index] // sum(weights)
        name = sql.Identifier(f"t{index:02d}")
        with psycopg.connect(server.url(DATABASE), autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id bigserial PRIMARY KEY, account int NOT NULL, amount numeric(12,2),"
                    " label text, created timestamptz, attrs jsonb)"
                ).format(name)
            )
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (account, amount, label, created, attrs) "
                    "SELECT g %% 10007, (g * 13 %% 100000) / 100.0, "
                    "md5(g::text) || ' étiquette ' || (g %% 97), "
                    "'2024-01-01'::timestamptz + g * interval '1 second', "
                    "jsonb_build_object('k', g %% 13, 'v', md5((g * 7)::text)) "
                    "FROM generate_series(1, %s) g"
                ).format(name),
                [rows],
            )
            conn.execute(sql.SQL("CREATE INDEX ON {} (account)").format(name))
            conn.execute(sql.SQL("CREATE INDEX ON {} (created)").format(name))
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(name))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(fill, range(tables)))
    with psycopg.connect(server.url(DATABASE)) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


def drop_target(server: LocalPostgres) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def run_pg_engine(source: LocalPostgres, target: LocalPostgres, workers: int | None) -> float:
    engine = PgEngine()
    job = EngineJob(
        command=Command.INIT,
        source_url=source.url(),
        target_url=target.url(),
        options=JobOptions(enable_sync=False),
    )
    invocation = engine.invocation(job)
    env = {**os.environ, **invocation.env}
    if workers:
        env["PG_ENGINE_JOBS"] = str(workers)
    started = time.monotonic()
    done = subprocess.run(
        invocation.argv, env=env, input=invocation.stdin.decode(), capture_output=True, text=True
    )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"pg engine failed:\n{done.stderr[-2000:]}")
    return elapsed


def libpq_env(server: LocalPostgres, database: str) -> dict[str, str]:
    return {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(server.port),
        "PGUSER": server.user,
        "PGPASSWORD": server.password,
        "PGDATABASE": database,
    }


def run_dump_restore(source: LocalPostgres, target: LocalPostgres) -> float:
    with psycopg.connect(target.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    started = time.monotonic()
    dump = subprocess.Popen(
        [str(bin_dir() / "pg_dump"), "-Fc", "--no-owner"],
        stdout=subprocess.PIPE,
        env=libpq_env(source, DATABASE),
    )
    restore = subprocess.run(
        [str(bin_dir() / "pg_restore"), "--no-owner", "--exit-on-error", "-d", DATABASE],
        stdin=dump.stdout,
        env=libpq_env(target, DATABASE),
        check=False,
    )
    if dump.stdout:
        dump.stdout.close()
    if dump.wait() != 0 or restore.returncode != 0:
        sys.exit("pg_dump | pg_restore failed")
    return time.monotonic() - started


def run_pgcopydb(source: LocalPostgres, target: LocalPostgres, workers: int) -> float | None:
    pgcopydb = shutil.which("pgcopydb")
    if pgcopydb is None:
        return None
    with psycopg.connect(target.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    work = Path(f"/tmp/pgcopydb-bench-{os.getpid()}")
    env = {**os.environ, "PATH": f"{bin_dir()}:{os.environ['PATH']}", "TMPDIR": str(work)}
    started = time.monotonic()
    # Throwaway servers with fake passwords: the URLs in argv are harmless here.
    done = subprocess.run(
        [
            pgcopydb,
            "clone",
            "--source",
            source.url(DATABASE),
            "--target",
            target.url(DATABASE),
            "--table-jobs",
            str(workers),
            "--index-jobs",
            str(workers),
            "--no-owner",
            "--no-acl",
            "--dir",
            str(work),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    shutil.rmtree(work, ignore_errors=True)
    if done.returncode != 0:
        print(f"pgcopydb failed (exit {done.returncode}), skipped:\n{done.stderr[-1500:]}", file=sys.stderr)
        return None
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024, help="approximate source database size")
    parser.add_argument("--tables", type=int, default=24)
    parser.add_argument("--workers", type=int, default=None, help="parallel copies (default: the engine's)")
    args = parser.parse_args()

    source = start_postgres(password="bench-source-pw")
    target = start_postgres(password="bench-target-pw")
    try:
        started = time.monotonic()
        size = generate(source, args.size_mb, args.tables)
        mb = size / 1_000_000
        print(
            f"generated {DATABASE}: {mb:.0f} MB in {args.tables} tables ({time.monotonic() - started:.0f} s)"
        )
        from worker.engines.pg.commands import default_workers

        workers = args.workers or default_workers()
        results: dict[str, float] = {}
        results["pg engine init"] = run_pg_engine(source, target, args.workers)
        drop_target(target)
        results["pg_dump | pg_restore (serial)"] = run_dump_restore(source, target)
        drop_target(target)
        copydb = run_pgcopydb(source, target, workers)
        if copydb is not None:
            results["pgcopydb clone"] = copydb
        else:
            print("pgcopydb: not on PATH or failed, skipped")
        drop_target(target)
    finally:
        source.stop()
        target.stop()

    base = results["pg engine init"]
    print(f"\n{'method':34} {'seconds':>8} {'MB/s':>8} {'pg engine speedup':>18}")
    for name, seconds in results.items():
        print(f"{name:34} {seconds:8.1f} {mb / seconds:8.1f} {seconds / base:17.2f}x")
    print(json.dumps({"size_mb": round(mb), "tables": args.tables, "workers": workers, "seconds": results}))


if __name__ == "__main__":
    main()
