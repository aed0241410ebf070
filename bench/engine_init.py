"""The pg engine's `init` against pg_dump/pg_restore and pgcopydb, on several database shapes.

    .venv/bin/python bench/engine_init.py [--shape current|small|large] [--size-mb 1024]
        [--workers N] [--netns --rate 80mbit] [--methods engine,dump-j4,...]

Shapes (a fresh source and target server per run):
- current: --size-mb over 24 tables of mixed sizes (each a bigserial primary key, two
  secondary indexes, numeric, text, timestamptz and jsonb columns);
- small: --small-tables tables (default 500) of --small-rows rows each, same columns;
- large: one table of --size-mb, same columns.

Methods, one after the other on the same servers (the target database dropped between):
engine (the pg engine's `init` as the worker runs it, `python -m worker.engines.pg`, no
sync), engine-nosplit (the same with splitting off, large shape), dump-j4
(`pg_dump -Fd -j4` to a directory, then `pg_restore -j4`), dump-serial
(`pg_dump -Fc | pg_restore`, one process each), pgcopydb (`pgcopydb clone`, as many
table and index jobs as the engine's workers) and pgcopydb-split (the same with
`--split-tables-larger-than` at the engine's threshold, large shape). pgcopydb comes from
Debian (`apt-get install -y pgcopydb`); without it those rows are skipped, saying so.

--netns runs the servers in network namespaces behind links that limit every TCP stream to
--rate (see bench/netns.py; needs root): the case of a worker far from its databases.

Each method's median time over the engine's: above 1.00x the engine is faster. With
--rounds N the methods take turns N times (the load of a shared machine changes by the
minute).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg import sql

from jobs.spec import Command, JobOptions
from local_cloud.postgres import bin_dir, start_postgres
from worker.engines import EngineJob, PgEngine
from worker.engines.pg.context import DEFAULT_SPLIT_MB, SPLIT_ENV, default_workers

DATABASE = "benchdb"
# Bytes a generated row takes on disk with its share of indexes (measured, roughly).
ROW_BYTES = 260
SHAPES = ("current", "small", "large")
METHODS = ("engine", "engine-nosplit", "dump-j4", "dump-serial", "pgcopydb", "pgcopydb-split")


class Server(Protocol):
    def url(self, dbname: str = "postgres") -> str: ...


def _create_table(conn: psycopg.Connection, name: sql.Identifier, rows: int) -> None:
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


def mixed_rows(size_mb: int, tables: int = 24) -> list[int]:
    """Rows of each table of the current shape: `tables` tables of mixed sizes, `size_mb` in all."""
    weights = [1 + (i % 6) for i in range(tables)]
    return [size_mb * 1_000_000 // ROW_BYTES * w // sum(weights) for w in weights]


def table_rows(args: argparse.Namespace) -> list[int]:
    """Rows of each generated table, for the chosen shape."""
    if args.shape == "small":
        return [args.small_rows] * args.small_tables
    if args.shape == "large":
        return [args.size_mb * 1_000_000 // ROW_BYTES]
    return mixed_rows(args.size_mb)


def generate(server: Server, rows: list[int]) -> int:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))

    def fill(indexes: range) -> None:
        with psycopg.connect(server.url(DATABASE), autocommit=True) as conn:
            for index in indexes:
                _create_table(conn, sql.Identifier(f"t{index:03d}"), rows[index])

    lanes = os.cpu_count() or 2
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        list(pool.map(fill, [range(lane, len(rows), lanes) for lane in range(lanes)]))
    with psycopg.connect(server.url(DATABASE)) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


def drop_target(server: Server) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def create_target(server: Server) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def run_engine(source: Server, target: Server, workers: int, split_mb: int) -> tuple[float, list[str]]:
    job = EngineJob(
        command=Command.INIT,
        source_url=source.url(),
        target_url=target.url(),
        options=JobOptions(enable_sync=False),
    )
    invocation = PgEngine().invocation(job)
    env = {**os.environ, **invocation.env, "PG_ENGINE_JOBS": str(workers), SPLIT_ENV: str(split_mb)}
    started = time.monotonic()
    done = subprocess.run(
        invocation.argv, env=env, input=invocation.stdin.decode(), capture_output=True, text=True
    )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"pg engine failed:\n{done.stderr[-2000:]}")
    # The engine reports what its ANALYZE cost; keep those lines for the figures.
    notes = [line for line in done.stderr.splitlines() if re.search(r"analy[sz]ed|split", line)]
    return elapsed, notes


def libpq_env(server: Server, database: str) -> dict[str, str]:
    url = psycopg.conninfo.conninfo_to_dict(server.url(database))
    return {
        **os.environ,
        "PGHOST": str(url["host"]),
        "PGPORT": str(url["port"]),
        "PGUSER": str(url["user"]),
        "PGPASSWORD": str(url["password"]),
        "PGDATABASE": database,
    }


def run_dump_serial(source: Server, target: Server) -> float:
    create_target(target)
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


def run_dump_parallel(source: Server, target: Server, jobs: int = 4) -> float:
    """pg_dump -Fd -jN, then pg_restore -jN: the directory format cannot go through a pipe."""
    create_target(target)
    with tempfile.TemporaryDirectory(prefix="bench-dump-") as tmp:
        directory = str(Path(tmp) / "dump")
        started = time.monotonic()
        subprocess.run(
            [str(bin_dir() / "pg_dump"), "-Fd", f"-j{jobs}", "--no-owner", "-f", directory],
            env=libpq_env(source, DATABASE),
            check=True,
        )
        subprocess.run(
            [
                str(bin_dir() / "pg_restore"),
                f"-j{jobs}",
                "--no-owner",
                "--exit-on-error",
                "-d",
                DATABASE,
                directory,
            ],
            env=libpq_env(target, DATABASE),
            check=True,
        )
        return time.monotonic() - started


def run_pgcopydb(source: Server, target: Server, workers: int, split_mb: int | None) -> float | None:
    pgcopydb = shutil.which("pgcopydb")
    if pgcopydb is None:
        return None
    create_target(target)
    work = Path(tempfile.mkdtemp(prefix="pgcopydb-bench-"))
    env = {**os.environ, "PATH": f"{bin_dir()}:{os.environ['PATH']}", "TMPDIR": str(work)}
    split = ["--split-tables-larger-than", f"{split_mb}MB"] if split_mb else []
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
            *split,
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


@contextlib.contextmanager
def servers(args: argparse.Namespace) -> Iterator[tuple[Server, Server]]:
    if args.netns:
        from netns import remote_pair

        with remote_pair(rate=args.rate) as pair:
            yield pair
        return
    source = start_postgres(password="bench-source-pw")
    try:
        target = start_postgres(password="bench-target-pw")
        try:
            yield source, target
        finally:
            target.stop()
    finally:
        source.stop()


def methods_for(
    args: argparse.Namespace, workers: int
) -> dict[str, Callable[[Server, Server], float | None]]:
    split_mb = args.split_mb
    notes: list[str] = args.engine_notes

    def engine(split: int) -> Callable[[Server, Server], float]:
        def run(source: Server, target: Server) -> float:
            elapsed, lines = run_engine(source, target, workers, split)
            notes.extend(lines)
            return elapsed

        return run

    available: dict[str, Callable[[Server, Server], float | None]] = {
        "engine": engine(split_mb),
        "engine-nosplit": engine(0),
        "dump-j4": run_dump_parallel,
        "dump-serial": run_dump_serial,
        "pgcopydb": lambda s, t: run_pgcopydb(s, t, workers, None),
        "pgcopydb-split": lambda s, t: run_pgcopydb(s, t, workers, split_mb),
    }
    wanted = args.methods.split(",") if args.methods else list(METHODS)
    if args.shape != "large" and not args.methods:
        wanted = [m for m in wanted if m not in ("engine-nosplit", "pgcopydb-split")]
    unknown = set(wanted) - set(available)
    if unknown:
        sys.exit(f"unknown methods: {', '.join(sorted(unknown))} (choose from {', '.join(METHODS)})")
    return {name: available[name] for name in wanted}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=SHAPES, default="current")
    parser.add_argument(
        "--size-mb", type=int, default=1024, help="database size of the current and large shapes"
    )
    parser.add_argument("--small-tables", type=int, default=500)
    parser.add_argument("--small-rows", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None, help="parallel copies (default: the engine's)")
    parser.add_argument(
        "--split-mb", type=int, default=DEFAULT_SPLIT_MB, help="split tables larger than this"
    )
    parser.add_argument("--methods", default="", help=f"comma-separated subset of {', '.join(METHODS)}")
    parser.add_argument("--netns", action="store_true", help="servers behind per-stream-limited links (root)")
    parser.add_argument("--rate", default="80mbit", help="per-stream limit in --netns mode (tc rate)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every method this many times, in turn; report medians"
    )
    args = parser.parse_args()
    args.engine_notes = []
    workers = args.workers or default_workers()
    chosen = methods_for(args, workers)
    load_before = os.getloadavg()
    rows = table_rows(args)
    runs: dict[str, list[float]] = {}
    skipped: set[str] = set()
    with servers(args) as (source, target):
        started = time.monotonic()
        mb = generate(source, rows) / 1_000_000
        print(
            f"shape {args.shape}: {DATABASE} {mb:.0f} MB in {len(rows)} tables "
            f"({time.monotonic() - started:.0f} s to generate)"
            + (f", every stream limited to {args.rate}" if args.netns else "")
        )
        # Methods take turns, round after round, so that a change in the machine's load
        # hits them alike; the median of each is reported.
        for _ in range(args.rounds):
            for name, method in chosen.items():
                elapsed = method(source, target)
                drop_target(target)
                if elapsed is None:
                    skipped.add(name)
                else:
                    runs.setdefault(name, []).append(elapsed)
                    print(f"  {name}: {elapsed:.1f} s", flush=True)
    load_after = os.getloadavg()
    results = {name: statistics.median(times) for name, times in runs.items()}
    base = results.get("engine") or next(iter(results.values()))
    print(f"\n{'method':16} {'median s':>8} {'MB/s':>8} {'vs engine':>10}  runs")
    for name, seconds in results.items():
        each = " ".join(f"{t:.1f}" for t in runs[name])
        print(f"{name:16} {seconds:8.1f} {mb / seconds:8.1f} {seconds / base:9.2f}x  {each}")
    for name in skipped:
        print(f"{name:16} skipped (pgcopydb not on PATH or failed; apt-get install -y pgcopydb)")
    for line in args.engine_notes:
        print(f"engine: {line}")
    print(
        f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (2-minute: {load_after[1]:.1f})"
    )
    print(
        json.dumps(
            {
                "shape": args.shape,
                "size_mb": round(mb),
                "tables": len(rows),
                "workers": workers,
                "split_mb": args.split_mb,
                "netns_rate": args.rate if args.netns else None,
                "seconds": {k: [round(t, 2) for t in v] for k, v in runs.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
