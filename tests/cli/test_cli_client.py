"""The client CLI without a stack: payloads, retries, watching, exit codes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.client import ApiClient, ApiError, TransientError
from cli.main import build_parser, main, make_client, new_lines, submit_payload
from cli.watch import Watcher, describe, exit_code_for, report_outcome
from local_cloud.http_front import HttpFront


def test_submit_payload_from_flags() -> None:
    args = build_parser().parse_args(
        [
            "submit",
            "init",
            "--source",
            "postgresql://u:pw@s/db",
            "--target",
            "postgresql://u:pw@t/db",
            "--include-databases",
            "a, b",
            "--exclude-tables",
            "a.audit",
            "--drop-existing",
            "--no-sync",
            "--timeout",
            "600",
        ]
    )
    assert submit_payload(args) == {
        "schema_version": "1.1",
        "command": "init",
        "source_url": "postgresql://u:pw@s/db",
        "target_url": "postgresql://u:pw@t/db",
        "filter": {"include_databases": ["a", "b"], "exclude_tables": ["a.audit"]},
        "options": {"drop_existing": True, "enable_sync": False, "job_timeout_seconds": 600},
    }


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["submit", "init", "--source", "x"])
    assert exit_info.value.code == 2
    assert main(["--api", "file:///etc/passwd", "list"]) == 2


def test_local_stack_key_goes_only_to_its_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEREN_REMOTE_API", raising=False)
    monkeypatch.delenv("SEREN_API_KEY", raising=False)
    (tmp_path / "stack.json").write_text(
        json.dumps({"api_endpoint": "http://127.0.0.1:9", "api_key": "local-key"})
    )
    local = make_client(build_parser().parse_args(["--state-dir", str(tmp_path), "list"]))
    assert (local.base_url, local.api_key) == ("http://127.0.0.1:9", "local-key")
    remote = make_client(
        build_parser().parse_args(["--state-dir", str(tmp_path), "--api", "https://x", "list"])
    )
    assert (remote.base_url, remote.api_key) == ("https://x", None)


def test_new_lines_after_a_window() -> None:
    assert new_lines([], ["a", "b"]) == ["a", "b"]
    assert new_lines(["a", "b"], ["a", "b", "c"]) == ["c"]
    assert new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == ["d", "e"]
    assert new_lines(["a"], ["a"]) == []


@pytest.fixture
def flaky_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An API whose first POST fails with 503; every request is recorded."""
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], request_id: str) -> dict[str, Any]:
        events.append(event)
        if event["requestContext"]["http"]["method"] == "POST" and len(events) == 1:
            return {"statusCode": 503, "body": json.dumps({"message": "Service Unavailable"})}
        if event["rawPath"] == "/jobs/missing":
            return {"statusCode": 404, "body": json.dumps({"error": "Job not found"})}
        return {"statusCode": 201, "body": json.dumps({"job_id": "j-1", "status": "pending"})}

    front = HttpFront(handler, port=0)
    front.start()
    yield front.url, events
    front.stop()


def test_transient_failures_are_retried_with_the_same_idempotency_key(
    flaky_api: tuple[str, list[dict[str, Any]]],
) -> None:
    url, events = flaky_api
    client = ApiClient(url, "k", sleep=lambda _: None)
    assert client.submit({"command": "init"}, "key-1")["job_id"] == "j-1"
    assert [e["headers"]["idempotency-key"] for e in events] == ["key-1", "key-1"]
    assert all(e["headers"]["x-api-key"] == "k" for e in events)
    with pytest.raises(ApiError) as error:
        client.job("missing")
    assert (error.value.status, error.value.message) == (404, "Job not found")


def test_unreachable_api_is_transient() -> None:
    client = ApiClient("http://127.0.0.1:9", None, attempts=2, sleep=lambda _: None, timeout_seconds=1)
    with pytest.raises(TransientError):
        client.jobs()


class FakeClient:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.log_calls = 0

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)

    def logs(self, job_id: str, limit: int = 100) -> list[str]:
        self.log_calls += 1
        return ["line 1", "ERROR: boom"] if self.log_calls > 1 else []


def job(status: str, **progress: Any) -> dict[str, Any]:
    return {"job_id": "j-1", "status": status, "created_at": "2026-01-01T00:00:00Z", "progress": progress}


def test_watch_prints_changes_and_rides_out_network_errors() -> None:
    client = FakeClient(
        [
            job("queued"),
            TransientError("cannot reach the API"),
            job("running", message="copying", databases_completed=1, databases_total=3, percent=33.3),
            job("running", message="copying", databases_completed=1, databases_total=3, percent=33.3),
            job("completed", message="done", databases_completed=3, databases_total=3, percent=100),
        ]
    )
    out = io.StringIO()
    watcher = Watcher(client, out, live=False, interval_seconds=0, sleep=lambda _: None)  # type: ignore[arg-type]
    final = watcher.watch("j-1")
    assert final["status"] == "completed"
    assert watcher.statuses_seen == ["queued", "running", "completed"]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("queued")
    assert "retrying" in lines[1]
    assert "databases 1/3 | 33%" in lines[2] and lines[2].endswith("| copying")
    assert len([line for line in lines if line.startswith("running")]) == 1  # unchanged: not repeated


def test_failure_report_waits_for_the_last_log_lines() -> None:
    client = FakeClient([])
    out = io.StringIO()
    failed = {**job("failed"), "error": "the engine failed", "logs": []}
    assert report_outcome(client, failed, out, sleep=lambda _: None) == 1  # type: ignore[arg-type]
    assert "the engine failed" in out.getvalue()
    assert "ERROR: boom" in out.getvalue()


def test_exit_codes_and_description() -> None:
    assert [exit_code_for(s) for s in ("completed", "failed", "timeout", "cancelled")] == [0, 1, 3, 4]
    assert describe(
        {**job("running", phase="copy", databases_completed=2, databases_total=4), "completed_at": None}
    ).startswith("running | copy | databases 2/4 | ")


def test_the_watch_says_when_a_lost_instance_is_being_replaced() -> None:
    lost = [{"attempt": 1, "reason": "instance i-1 is no longer running", "at": "2026-01-01T00:00:00Z"}]
    waiting = {**job("provisioning"), "attempt": 1, "max_attempts": 3, "lost_attempts": lost}
    assert describe(waiting).startswith("provisioning | instance lost, retrying (attempt 2 of 3) | ")
    launched = {**waiting, "attempt": 2}
    assert "instance lost, retrying (attempt 2 of 3)" in describe(launched)
    running_again = {**launched, "status": "running"}
    assert "retrying" not in describe(running_again)
    assert "retrying" not in describe(job("provisioning"))


def test_submit_help_states_the_default_time_limit_and_the_maximum() -> None:
    import subprocess
    import sys

    from jobs.spec import DEFAULT_JOB_TIMEOUT_SECONDS, MAX_JOB_TIMEOUT_SECONDS

    command = Path(sys.executable).with_name("seren-remote")
    shown = subprocess.run(
        [str(command), "submit", "--help"], capture_output=True, text=True, check=True, env={"COLUMNS": "200"}
    ).stdout
    timeout_help = " ".join(line.strip() for line in shown.rsplit("--timeout SECONDS", 1)[1].splitlines()[:6])
    assert f"default {DEFAULT_JOB_TIMEOUT_SECONDS} (8 h)" in timeout_help
    assert f"at most {MAX_JOB_TIMEOUT_SECONDS} (7 days)" in timeout_help
    assert "deadline_at" in timeout_help
