"""An `init` of several databases interrupted at about half-way and resumed, against the same
`init` uninterrupted, in one run; and what workers cost per size class, on-demand and Spot.

    .venv/bin/python bench/resume_init.py [--databases 4] [--scale 2] [--runs 1]

The pg engine runs as the worker runs it (`python -m worker.engines.pg`, no sync), against
a source of --databases sample databases (--scale 1 is about 20 MB each) and a fresh target:
- uninterrupted: one run;
- interrupted: a run killed (SIGKILL, what losing the instance does to it) once the first
  half of the databases are done and the next one has copied some rows, then a second run
  given the checkpoint the first one printed, as a retried attempt is.
It prints both times, their ratio (target <= 1.5x), and the bytes copied twice: what the
killed run had copied of the database in flight (target: at most that one database).

The cost table needs no servers: `--costs-only`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from control_plane.settings import DEFAULT_INSTANCE_TYPE_BY_SIZE, GIB
from jobs.attempts import CheckpointState, DatabaseCheckpoint
from jobs.spec import Command, JobFilter, JobOptions
from local_cloud.postgres import start_postgres
from local_cloud.sample_data import create_sample, table_checksums
from worker.engines import EngineJob, PgEngine

PASSWORD = "bench-password-not-secret"  # a throwaway local server's

# Linux, us-east-1, USD per hour. LIST PRICES AS KNOWN, NOT FETCHED (no network here): on-demand
# from the AWS EC2 On-Demand pricing page and typical Spot prices from the Spot price history,
# both as known in 2024. Spot prices move by the hour and by zone: check before relying on them.
PRICES_AS_OF = "2024 (list prices as known, not fetched: verify on aws.amazon.com/ec2/pricing)"
ON_DEMAND_PER_HOUR = {"t3.medium": 0.0416, "c5.large": 0.085, "c5.2xlarge": 0.34, "c5.4xlarge": 0.68}
TYPICAL_SPOT_PER_HOUR = {"t3.medium": 0.0125, "c5.large": 0.035, "c5.2xlarge": 0.14, "c5.4xlarge": 0.28}


@dataclass
class Run:
    seconds: float
    bytes_copied: int
    checkpoint: dict[str, DatabaseCheckpoint] = field(default_factory=dict)
    bytes_at_last_done: int = 0  # bytes copied when the last database was finished


def engine_run(
    source_url: str,
    target_url: str,
    databases: list[str],
    checkpoint: dict[str, DatabaseCheckpoint],
    *,
    kill_after_done: int | None = None,
) -> Run:
    """One engine run; with `kill_after_done`, SIGKILL once that many databases are done and
    the next one has copied some rows."""
    job = EngineJob(
        command=Command.INIT,
        source_url=source_url,
        target_url=target_url,
        filter=JobFilter(include_databases=databases),
        options=JobOptions(enable_sync=False),
        checkpoint=checkpoint,
    )
    invocation = PgEngine().invocation(job)
    started = time.monotonic()
    process = subprocess.Popen(
        invocation.argv,
        env={**os.environ, **invocation.env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(invocation.stdin.decode())
    process.stdin.close()
    run = Run(0.0, 0, dict(checkpoint))
    done = sum(1 for entry in checkpoint.values() if entry.state is CheckpointState.DONE)
    for line in process.stdout:
        event: dict[str, Any] = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "progress":
            run.bytes_copied = int(event.get("bytes_copied") or 0)
        elif event.get("event") == "checkpoint":
            entry = DatabaseCheckpoint.model_validate(event)
            run.checkpoint[str(event["database"])] = entry
            if entry.state is CheckpointState.DONE:
                done += 1
                run.bytes_at_last_done = run.bytes_copied
        if (
            kill_after_done is not None
            and done >= kill_after_done
            and run.bytes_copied > run.bytes_at_last_done
        ):
            process.kill()
            break
    code = process.wait()
    run.seconds = time.monotonic() - started
    if kill_after_done is None and code != 0:
        raise SystemExit(f"the engine failed with exit code {code}")
    return run


def drop_databases(url: str, databases: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for database in databases:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def measure(args: argparse.Namespace) -> None:
    databases = [f"bench_{index}" for index in range(args.databases)]
    half = args.databases // 2
    with start_postgres(password=PASSWORD) as source, start_postgres(password=PASSWORD) as target:
        for database in databases:
            create_sample(source.url(), database=database, scale=args.scale)
        for run_index in range(args.runs):
            drop_databases(target.url(), databases)
            whole = engine_run(source.url(), target.url(), databases, {})
            drop_databases(target.url(), databases)
            killed = engine_run(source.url(), target.url(), databases, {}, kill_after_done=half)
            resumed = engine_run(source.url(), target.url(), databases, killed.checkpoint)
            for database in databases:
                assert table_checksums(target.url(), database) == table_checksums(source.url(), database)
            interrupted = killed.seconds + resumed.seconds
            copied_twice = killed.bytes_copied - killed.bytes_at_last_done
            per_database = whole.bytes_copied / len(databases)
            mb = 1e6
            lines = [
                f"run {run_index + 1}: {args.databases} databases of about {per_database / mb:.1f} MB copied",
                f"  uninterrupted:  {whole.seconds:7.2f} s, {whole.bytes_copied / mb:8.1f} MB",
                f"  killed at half: {killed.seconds:7.2f} s, {killed.bytes_copied / mb:8.1f} MB",
                f"  resumed:        {resumed.seconds:7.2f} s, {resumed.bytes_copied / mb:8.1f} MB",
                f"  (killed + resumed) / uninterrupted: {interrupted / whole.seconds:.2f}x (target <= 1.5x)",
                f"  bytes copied twice: {copied_twice / mb:.1f} MB (one database is "
                f"{per_database / mb:.1f} MB; target: at most the one in flight)",
            ]
            print("\n".join(lines))


def cost_table(max_attempts: int) -> None:
    print(f"Worker cost per hour by size class; prices: {PRICES_AS_OF}")
    print(
        "| estimated size | type | on-demand $/h | typical Spot $/h | Spot saves "
        "| Spot losses, worst $/job-hour | any losses, worst $/job-hour |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    low = 0
    for below, instance_type in DEFAULT_INSTANCE_TYPE_BY_SIZE:
        size = f"{low // GIB}-{below // GIB} GiB" if below else f">= {low // GIB} GiB"
        on_demand, spot = ON_DEMAND_PER_HOUR[instance_type], TYPICAL_SPOT_PER_HOUR[instance_type]
        # Worst case of the retry policy: every attempt but the last lost just before the end,
        # each on Spot; the last on on-demand (spot-then-on-demand found no Spot capacity).
        worst = (max_attempts - 1) * spot + on_demand
        every = max_attempts * on_demand  # every attempt on on-demand, each lost at its end
        print(
            f"| {size} | {instance_type} | {on_demand:.4f} | {spot:.4f} | {1 - spot / on_demand:.0%} | "
            f"{worst:.4f} ({worst / on_demand:.2f}x on-demand) | {every:.4f} ({max_attempts}x) |"
        )
        low = below or low
    print(
        f"Worst cases of max_launch_attempts = {max_attempts}, each attempt lost just before it would "
        f"have finished: Spot interruptions on all but the last, which runs on-demand; or losses of "
        f"any kind on on-demand ({max_attempts}x). With resume, a loss costs the database in flight, "
        "not the whole job: for a job of several databases the cost is far below these bounds."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--databases", type=int, default=4)
    parser.add_argument(
        "--scale", type=float, default=2.0, help="sample scale per database (1 = about 20 MB)"
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--costs-only", action="store_true")
    args = parser.parse_args()
    cost_table(args.max_attempts)
    if not args.costs_only:
        measure(args)


if __name__ == "__main__":
    main()
