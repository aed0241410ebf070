"""The seren-replicator adapter against a fake binary that records argv and env and logs like tracing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from jobs.spec import Command, JobFilter, JobOptions
from worker.engines import EngineJob, PgEngine, ReplicatorEngine, select_engine, summarize_failure
from worker.settings import Settings

PASSWORD = "s3cret-test-pw"
SOURCE = f"postgresql://alice:{PASSWORD}@db.example.test:5432/app"
TARGET = "postgresql://bob:other-s3cret@target.example.test:5433/postgres"

FAKE = """#!{python}
import json, os, sys
def proc_self(name):
    with open(f"/proc/self/{{name}}", "rb") as f:
        return f.read().decode(errors="replace")
with open(os.environ["FAKE_RECORD"], "w") as f:
    record = {{"argv": sys.argv[1:], "rust_log": os.environ.get("RUST_LOG")}}
    json.dump(record | {{"cmdline": proc_self("cmdline"), "environ": proc_self("environ")}}, f)
source = sys.argv[sys.argv.index("--source") + 1]
ts = "2026-01-01T00:00:00.000000Z"
print(f"{{ts}}  INFO seren_replicator::commands::init: Connecting to source {{source}}")
print(f"{{ts}}  INFO seren_replicator::commands::init: Replicating database 1/2: shop")
print(f"{{ts}}  INFO seren_replicator::commands::init: Completed database 1/2: shop")
print(f"{{ts}}  INFO seren_replicator::commands::init: [2/2] Replicating database analytics")
print(f"{{ts}}  WARN seren_replicator::sync: Slow table events")
print("plain line without level, password={password}")
code = int(os.environ.get("FAKE_EXIT", "0"))
if code:
    print(f"{{ts}} ERROR seren_replicator: Failed to connect to {{source}}: password authentication failed")
sys.exit(code)
"""


@pytest.fixture
def fake_binary(tmp_path: Path) -> Path:
    path = tmp_path / "seren-replicator"
    path.write_text(FAKE.format(python=sys.executable, password=PASSWORD))
    path.chmod(0o755)
    return path


def job(command: Command, job_filter: JobFilter | None = None, **options: object) -> EngineJob:
    return EngineJob(
        command=command,
        source_url=SOURCE,
        target_url=TARGET,
        filter=job_filter or JobFilter(),
        options=JobOptions.model_validate(options),
    )


FULL_FILTER = JobFilter(
    include_databases=["shop", "analytics"],
    exclude_databases=["tmp"],
    include_tables=["shop.orders", "shop.public.items"],
    exclude_tables=["analytics.audit_log"],
)
FILTER_ARGS = [
    "--include-databases",
    "shop,analytics",
    "--exclude-databases",
    "tmp",
    "--include-tables",
    "shop.orders,shop.public.items",
    "--exclude-tables",
    "analytics.audit_log",
]


@pytest.mark.parametrize(
    ("command", "options", "expected_tail"),
    [
        (Command.INIT, {}, [*FILTER_ARGS, "--yes", "--local"]),
        (
            Command.INIT,
            {"drop_existing": True, "enable_sync": False},
            [*FILTER_ARGS, "--drop-existing", "--no-sync", "--yes", "--local"],
        ),
        (Command.VALIDATE, {"drop_existing": True, "enable_sync": False}, [*FILTER_ARGS, "--no-interactive"]),
        (Command.SYNC, {}, [*FILTER_ARGS, "--no-interactive"]),
        (Command.VERIFY, {}, FILTER_ARGS),
        (Command.STATUS, {}, FILTER_ARGS[:4]),
    ],
)
def test_argv_per_command(
    fake_binary: Path, command: Command, options: dict[str, object], expected_tail: list[str]
) -> None:
    invocation = ReplicatorEngine(fake_binary).invocation(job(command, FULL_FILTER, **options))
    assert ReplicatorEngine(fake_binary).binary_argv(job(command, FULL_FILTER, **options)) == [
        str(fake_binary),
        command.value,
        "--source",
        SOURCE,
        "--target",
        TARGET,
        *expected_tail,
    ]
    # An init that may not replace the user's databases checks the target first
    # (tests/engines/test_replicator_preflight.py); every other run is the binary itself.
    preflight = command is Command.INIT and not options.get("drop_existing")
    assert (invocation.argv[0] != str(fake_binary)) == preflight
    assert (
        SOURCE in invocation.secrets
        and PASSWORD in invocation.secrets
        and "other-s3cret" in invocation.secrets
    )


def test_no_filter_flags_without_filters(fake_binary: Path) -> None:
    argv = ReplicatorEngine(fake_binary).invocation(job(Command.VERIFY)).argv
    assert argv == [str(fake_binary), "verify", "--source", SOURCE, "--target", TARGET]


def run_fake(fake_binary: Path, tmp_path: Path, exit_code: int = 0, log_level: str = "debug"):
    engine = ReplicatorEngine(fake_binary)
    invocation = engine.invocation(job(Command.INIT, log_level=log_level, drop_existing=True))
    record = tmp_path / "record.json"
    env = {**os.environ, **invocation.env, "FAKE_RECORD": str(record), "FAKE_EXIT": str(exit_code)}
    done = subprocess.run(invocation.argv, env=env, capture_output=True, text=True, timeout=30)
    parser = engine.parser(invocation)
    parsed = [parser.parse_line(line) for line in done.stdout.splitlines()]
    return engine, done, parsed, json.loads(record.read_text())


def test_output_is_redacted_and_progress_parsed(fake_binary: Path, tmp_path: Path) -> None:
    _, done, parsed, record = run_fake(fake_binary, tmp_path)
    assert done.returncode == 0
    assert record["rust_log"] == "debug"
    assert record["argv"][:2] == ["init", "--source"]
    # The fake echoes the URL and the password: nothing parsed may carry either.
    assert PASSWORD in done.stdout
    for line in parsed:
        assert PASSWORD not in line.log
        if line.progress is not None:
            assert PASSWORD not in line.progress.model_dump_json()
    progress = [p.progress for p in parsed if p.progress is not None]
    assert progress[1].current_database == "shop"
    assert (progress[1].databases_completed, progress[1].databases_total) == (0, 2)
    assert progress[2].databases_completed == 1
    assert progress[3].current_database == "analytics"
    assert (progress[3].databases_completed, progress[3].databases_total) == (1, 2)
    # A message without a count keeps the last known counts and shows the message.
    assert progress[4].message == "Slow table events"
    assert progress[4].current_database == "analytics"
    assert parsed[-1].progress is None and "***" in parsed[-1].log


def test_failure_exit_code_and_summary(fake_binary: Path, tmp_path: Path) -> None:
    engine, done, parsed, _ = run_fake(fake_binary, tmp_path, exit_code=1)
    assert done.returncode == 1
    assert parsed[-1].is_error
    summary = summarize_failure(parsed)
    assert "password authentication failed" in summary
    assert PASSWORD not in summary and "alice" not in summary
    assert engine.exit_message(1) == "seren-replicator reported a failure"
    assert engine.exit_message(-9) == "seren-replicator was stopped by signal 9"
    assert "code 77" in engine.exit_message(77)


def test_init_always_runs_here(fake_binary: Path) -> None:
    """Without --local, init hands a *.serendb.com target (or a failed preflight) to the
    remote service by itself: the worker would send the job's credentials on."""
    serendb_job = replace(job(Command.INIT), target_url="postgresql://bob:pw@ep-1.db.serendb.com/app")
    argv = ReplicatorEngine(fake_binary).binary_argv(serendb_job)
    assert "--local" in argv and "--seren" not in argv
    for command in (Command.VALIDATE, Command.SYNC, Command.VERIFY, Command.STATUS):
        assert "--local" not in ReplicatorEngine(fake_binary).invocation(job(command)).argv


def test_select_engine(fake_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEREN_REPLICATOR_PATH", str(fake_binary))
    assert Settings.model_fields["engine"].default == "auto"
    chosen = select_engine()
    assert isinstance(chosen, ReplicatorEngine) and chosen.path == fake_binary
    assert isinstance(select_engine("seren-replicator"), ReplicatorEngine)
    assert isinstance(select_engine("pg"), PgEngine)
    monkeypatch.setenv("SEREN_REPLICATOR_PATH", str(tmp_path / "absent"))
    assert isinstance(select_engine("auto"), PgEngine)
    with pytest.raises(ValueError, match="unknown engine"):
        select_engine("rsync")


def test_auto_runs_pg_where_private_ranges_are_allowed_even_with_the_binary_installed(
    fake_binary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The binary's pg_dump/psql resolve names again: with private ranges allowed, only the
    security group's egress could stop a rebinding, and it no longer does."""
    monkeypatch.setenv("SEREN_REPLICATOR_PATH", str(fake_binary))
    engine = select_engine("auto", private_hosts_allowed=True)
    assert isinstance(engine, PgEngine)
    invocation = engine.invocation(job(Command.INIT, FULL_FILTER))
    for secret in (PASSWORD, "other-s3cret"):
        assert all(secret not in arg for arg in invocation.argv)
        assert all(secret not in value for value in invocation.env.values())
    assert isinstance(select_engine("seren-replicator", private_hosts_allowed=True), ReplicatorEngine)


def test_the_replicator_environment_holds_no_password(fake_binary: Path, tmp_path: Path) -> None:
    """What the adapter controls: the child's /proc environ is clean. Its /proc cmdline holds
    both URLs, the documented limit of the binary (worker/engines/README.md)."""
    _, done, _, record = run_fake(fake_binary, tmp_path)
    assert done.returncode == 0
    assert record["argv"][:5] == ["init", "--source", SOURCE, "--target", TARGET]
    assert record["cmdline"].split("\0")[-3:] == ["--yes", "--local", ""]
    for secret in (PASSWORD, "other-s3cret"):
        assert secret not in record["environ"]


def test_pg_engine_invocation_keeps_secrets_out_of_argv() -> None:
    invocation = PgEngine().invocation(job(Command.INIT, FULL_FILTER, drop_existing=True))
    assert invocation.argv[1:] == ["-m", "worker.engines.pg"]
    assert all(PASSWORD not in arg for arg in invocation.argv)
    assert all(PASSWORD not in value for value in invocation.env.values())
    engine_input = json.loads(invocation.stdin)
    assert engine_input["source_url"] == SOURCE and engine_input["target_url"] == TARGET
    spec = engine_input["job"]
    assert spec["command"] == "init" and spec["options"]["drop_existing"] is True
    assert spec["filter"]["exclude_tables"] == ["analytics.audit_log"]


def test_pg_parser_reads_progress_and_errors() -> None:
    engine = PgEngine()
    parser = engine.parser(engine.invocation(job(Command.INIT)))
    event = {
        "event": "progress",
        "phase": "copy",
        "message": f"at {SOURCE}",
        "databases_total": 2,
        "percent": 5,
    }
    parsed = parser.parse_line(json.dumps(event))
    assert parsed.progress is not None and parsed.progress.databases_total == 2
    assert PASSWORD not in parsed.progress.message and PASSWORD not in parsed.log
    error = parser.parse_line(f"ERROR: connection to {SOURCE} failed for {PASSWORD}")
    assert error.is_error and PASSWORD not in error.log
    assert not parser.parse_line("INFO: copied shop.public.orders").is_error
    assert summarize_failure([], [PASSWORD]) == "the engine failed without output"
