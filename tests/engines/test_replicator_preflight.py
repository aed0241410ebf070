"""The seren-replicator engine never drops what the user has: its unattended `init --yes` drops an
existing target database that holds tables, so without `drop_existing` the preflight checks the
target first and the binary (a stand-in that records that it ran) is never started when it would.

Run as the worker runs engines (`worker.process.EngineProcess`, checkpoints acknowledged), on
real PostgreSQL.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from engine_helpers import create_database, database_url, engine_job

from jobs.attempts import CheckpointState, DatabaseCheckpoint
from jobs.spec import Command
from local_cloud.postgres import LocalPostgres
from worker.engines import ParsedLine, ReplicatorEngine
from worker.engines.base import EngineJob
from worker.process import EngineProcess

pytestmark = pytest.mark.postgres

STAND_IN = """#!{python}
import json, sys
with open({record!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
print('{{"event": "checkpoint", "database": "victim", "key": "k", "state": "done", "created": true}}')
print("2026-01-01T00:00:00.000000Z  INFO seren_replicator::commands::init: Replicating database 1/1: shop")
"""


@pytest.fixture
def stand_in(tmp_path: Path) -> tuple[Path, Path]:
    record = tmp_path / "ran.jsonl"
    binary = tmp_path / "seren-replicator"
    binary.write_text(STAND_IN.format(python=sys.executable, record=str(record)))
    binary.chmod(0o755)
    return binary, record


def run_like_the_worker(engine: ReplicatorEngine, job: EngineJob) -> tuple[int, list[ParsedLine]]:
    invocation = engine.invocation(job)
    parser = engine.parser(invocation)
    parsed: list[ParsedLine] = []
    lock = threading.Lock()
    process: EngineProcess | None = None

    def on_line(line: str) -> None:
        with lock:
            parsed.append(parser.parse_line(line))
            recorded = sum(1 for p in parsed if p.checkpoint is not None)
        if parsed[-1].checkpoint is not None:
            assert process is not None
            process.acknowledge(recorded)

    process = EngineProcess(invocation.argv, invocation.env, on_line, stdin=invocation.stdin)
    deadline = time.monotonic() + 60
    while not process.exited() and time.monotonic() < deadline:
        time.sleep(0.05)
    return process.finish(), parsed


def ran(record: Path) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def init_job(source: LocalPostgres, target: LocalPostgres, **options: object) -> EngineJob:
    return engine_job(
        Command.INIT,
        source.url(),
        target.url(),
        {"include_databases": ["shop"]},
        **options,
    )


def test_a_target_database_holding_data_is_refused_and_the_binary_never_starts(
    source: LocalPostgres, target: LocalPostgres, stand_in: tuple[Path, Path]
) -> None:
    binary, record = stand_in
    create_database(target, "shop", "CREATE TABLE keep (v int); INSERT INTO keep VALUES (1), (2)")
    code, parsed = run_like_the_worker(ReplicatorEngine(binary), init_job(source, target))
    assert code == 1
    assert ran(record) == []
    errors = [p.log for p in parsed if p.is_error]
    assert errors and "shop (1 relations)" in errors[-1] and "drop_existing" in errors[-1]
    assert not any(p.checkpoint for p in parsed)
    with psycopg.connect(database_url(target, "shop")) as conn:
        assert conn.execute("SELECT count(*) FROM keep").fetchone() == (2,)


def test_a_missing_target_database_is_recorded_as_this_jobs_before_the_binary_starts(
    source: LocalPostgres, target: LocalPostgres, stand_in: tuple[Path, Path]
) -> None:
    binary, record = stand_in
    code, parsed = run_like_the_worker(ReplicatorEngine(binary), init_job(source, target))
    assert code == 0
    [argv] = ran(record)
    assert argv[0] == "init" and argv[-2:] == ["--yes", "--local"] and "--drop-existing" not in argv
    checkpoints = [p.checkpoint for p in parsed if p.checkpoint is not None]
    # Only the preflight's own entry: the one the binary printed is not taken.
    assert len(checkpoints) == 1
    database, entry = checkpoints[0]
    assert database == "shop" and entry.created and entry.state is CheckpointState.COPYING
    assert any(p.progress and p.progress.current_database == "shop" for p in parsed)


def test_a_retry_lets_the_binary_replace_the_database_this_job_created(
    source: LocalPostgres, target: LocalPostgres, stand_in: tuple[Path, Path]
) -> None:
    binary, record = stand_in
    create_database(target, "shop", "CREATE TABLE half_copied (v int)")
    job = init_job(source, target)
    mine = DatabaseCheckpoint(key="any", state=CheckpointState.COPYING, created=True)
    retried = EngineJob(**{**job.__dict__, "checkpoint": {"shop": mine}})
    code, _ = run_like_the_worker(ReplicatorEngine(binary), retried)
    assert code == 0 and len(ran(record)) == 1


def test_an_empty_existing_database_and_drop_existing_start_the_binary(
    source: LocalPostgres, target: LocalPostgres, stand_in: tuple[Path, Path]
) -> None:
    binary, record = stand_in
    create_database(target, "shop", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    code, _ = run_like_the_worker(ReplicatorEngine(binary), init_job(source, target))
    assert code == 0 and len(ran(record)) == 1
    # drop_existing: the user asked for the replacement, the binary runs directly.
    create_database(target, "shop", "CREATE TABLE replace_me (v int)")
    invocation = ReplicatorEngine(binary).invocation(init_job(source, target, drop_existing=True))
    assert invocation.argv[0] == str(binary) and invocation.stdin == b""
    code, _ = run_like_the_worker(ReplicatorEngine(binary), init_job(source, target, drop_existing=True))
    assert code == 0 and "--drop-existing" in ran(record)[-1]


def test_the_preflight_keeps_passwords_out_of_its_argv_and_output(
    source: LocalPostgres, target: LocalPostgres, stand_in: tuple[Path, Path]
) -> None:
    binary, _ = stand_in
    create_database(target, "shop", "CREATE TABLE keep (v int)")
    job = init_job(source, target)
    invocation = ReplicatorEngine(binary).invocation(job)
    assert invocation.argv[1:] == ["-m", "worker.engines.replicator_preflight"]
    _, parsed = run_like_the_worker(ReplicatorEngine(binary), job)
    for secret in (source.password, target.password):
        assert all(secret not in arg for arg in invocation.argv)
        assert all(secret not in value for value in invocation.env.values())
        assert all(secret not in p.log for p in parsed)
