"""`make demo`: one real replication job through the whole service, on this machine.

Starts the local stack and two throwaway PostgreSQL servers (password auth, 127.0.0.1),
fills the source with the sample database, submits `init` and then `verify` over HTTP with
the `seren-remote` CLI, prints rows per table on both sides and the timings, and tears
everything down. Exits 0 only if the target ends up equal to the source.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from local_cloud.postgres import LocalPostgres, start_postgres
from local_cloud.sample_data import (
    SAMPLE_DATABASE,
    create_sample,
    database_size_bytes,
    row_counts,
    table_checksums,
)

SEREN_REMOTE = str(Path(sys.executable).parent / "seren-remote")
STATE_DIR = Path(".local") / "demo"


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


@contextmanager
def local_stack(state_dir: Path) -> Iterator[Callable[[], dict[str, str]]]:
    """Starts `seren-remote local up`; yields a function that waits until it serves."""
    state_dir.mkdir(parents=True, exist_ok=True)
    stack_file = state_dir / "stack.json"
    stack_file.unlink(missing_ok=True)
    with (state_dir / "console.log").open("wb") as console:
        process = subprocess.Popen(
            [
                SEREN_REMOTE,
                "local",
                "up",
                "--port",
                "0",
                "--state-dir",
                str(state_dir),
                "--reaper-interval",
                "2",
            ],
            stdout=console,
            stderr=subprocess.STDOUT,
        )

    def ready() -> dict[str, str]:
        deadline = time.monotonic() + 120
        while not stack_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the local stack did not start; see {state_dir / 'console.log'}")
            time.sleep(0.1)
        return dict(json.loads(stack_file.read_text()))

    try:
        yield ready
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_cli(info: dict[str, str], *args: str) -> int:
    env = {**os.environ, "SEREN_REMOTE_API": info["api_endpoint"], "SEREN_API_KEY": info["api_key"]}
    return subprocess.run([SEREN_REMOTE, *args], env=env, check=False).returncode


def summary(source: LocalPostgres, target: LocalPostgres) -> bool:
    source_rows = row_counts(source.url(), SAMPLE_DATABASE)
    try:
        target_rows = row_counts(target.url(), SAMPLE_DATABASE)
        same_content = table_checksums(source.url()) == table_checksums(target.url())
    except Exception as exc:  # the target database may not even exist after a failed init
        print(f"cannot read the target: {type(exc).__name__}")
        target_rows, same_content = {}, False
    print(f"\n{'table':<24} {'source rows':>12} {'target rows':>12}")
    for table, count in source_rows.items():
        print(f"{table:<24} {count:>12,} {target_rows.get(table, 0):>12,}")
    return source_rows == target_rows and same_content


def main() -> int:
    timings: dict[str, float] = {}
    started = time.monotonic()
    say("starting the local stack (moto, API, stream poller, reaper schedule, EC2 driver)")
    say("starting two PostgreSQL servers on 127.0.0.1 with password authentication")
    password = "demo-" + secrets.token_urlsafe(12)
    with (
        local_stack(STATE_DIR) as stack_ready,
        start_postgres(password=password) as source,
        start_postgres(password=password) as target,
    ):
        info = stack_ready()
        timings["local stack and PostgreSQL up"] = time.monotonic() - started
        print(f"    API {info['api_endpoint']}   AWS (moto) {info['aws_endpoint_url']}")

        mark = time.monotonic()
        say(f"filling the source with the sample database {SAMPLE_DATABASE!r}")
        create_sample(source.url())
        timings["sample data loaded"] = time.monotonic() - mark
        rows = sum(row_counts(source.url()).values())
        megabytes = database_size_bytes(source.url()) / 1e6
        print(f"    {rows:,} rows in 5 tables across 3 schemas, {megabytes:.1f} MB on disk")

        filters = ["--include-databases", SAMPLE_DATABASE, "--watch", "--interval", "0.5"]
        mark = time.monotonic()
        say("seren-remote submit init --no-sync --watch")
        init_exit = run_cli(
            info, "submit", "init", "--source", source.url(), "--target", target.url(), "--no-sync", *filters
        )
        timings["init (submit to completed)"] = time.monotonic() - mark
        mark = time.monotonic()
        say("seren-remote submit verify --watch")
        verify_exit = run_cli(
            info, "submit", "verify", "--source", source.url(), "--target", target.url(), *filters
        )
        timings["verify (submit to completed)"] = time.monotonic() - mark
        equal = summary(source, target)
        say("tearing down")
    timings["total"] = time.monotonic() - started
    print()
    for label, seconds in timings.items():
        print(f"{label:<32} {seconds:7.1f} s")
    ok = init_exit == 0 and verify_exit == 0 and equal
    print("\nDEMO PASSED: the target equals the source" if ok else "\nDEMO FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
