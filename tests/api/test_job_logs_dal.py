"""The worker log stream: LogWriter batches, creates the stream, redacts; read_lines
returns the last lines, newest last."""

from __future__ import annotations

from typing import Any

import pytest

from jobs import job_logs
from jobs.job_logs import LogWriter, read_lines
from tests.support.api import TEST_PASSWORD, ApiWorld


class CountingLogs:
    """Wraps the moto logs client to count PutLogEvents calls."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.puts: list[int] = []

    def put_log_events(self, **kwargs: Any) -> Any:
        self.puts.append(len(kwargs["logEvents"]))
        return self._client.put_log_events(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_writer_creates_the_stream_batches_and_reads_back_newest_last(world: ApiWorld) -> None:
    logs = CountingLogs(world.logs)
    writer = LogWriter(world.log_group, "job-1", flush_interval_seconds=3600, client=logs)
    for i in range(250):
        writer.write(f"line {i}\n")
    assert logs.puts == []  # buffered
    writer.close()
    assert logs.puts == [250]
    assert read_lines(world.log_group, "job-1", 3, client=world.logs) == ["line 247", "line 248", "line 249"]


def test_writer_splits_batches_at_the_event_limit(world: ApiWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_logs, "MAX_BATCH_EVENTS", 100)
    logs = CountingLogs(world.logs)
    with LogWriter(world.log_group, "job-2", flush_interval_seconds=3600, client=logs) as writer:
        for i in range(250):
            writer.write(f"line {i}")
    assert logs.puts == [100, 100, 50]
    assert len(read_lines(world.log_group, "job-2", 1000, client=world.logs)) == 250


def test_writer_removes_secrets_and_url_credentials(world: ApiWorld) -> None:
    with LogWriter(world.log_group, "job-3", secrets=[TEST_PASSWORD], client=world.logs) as writer:
        writer.write(f"auth failed for password {TEST_PASSWORD}")
        writer.write(f"postgresql://replicator:{TEST_PASSWORD}@h/db")
        writer.write("")
    lines = read_lines(world.log_group, "job-3", client=world.logs)
    assert len(lines) == 3 and all(TEST_PASSWORD not in line for line in lines)


def test_missing_stream_reads_as_no_lines(world: ApiWorld) -> None:
    assert read_lines(world.log_group, "no-such-stream", client=world.logs) == []


def test_a_failing_send_drops_the_batch_without_raising(
    world: ApiWorld, caplog: pytest.LogCaptureFixture
) -> None:
    with LogWriter("/no/such/group", "job-4", client=world.logs) as writer:
        writer.write("lost")
    assert "dropped 1 log lines" in caplog.text
