"""The worker log stream: LogWriter batches, creates the stream, redacts; read_lines
returns the last lines, newest last."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from jobs import job_logs
from jobs.job_logs import WRITER_TAG, JobLogGroups, LogWriter, job_log_group, read_lines
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


def _groups(world: ApiWorld) -> JobLogGroups:
    kms_key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    account = kms_key.split(":")[4]
    return JobLogGroups(
        world.log_group,
        arn_prefix=f"arn:aws:logs:us-east-1:{account}:log-group:",
        retention_days=14,
        kms_key_id=kms_key,
        client=world.logs,
    )


def _group_of(world: ApiWorld, job_id: str) -> dict[str, Any]:
    name = job_log_group(world.log_group, job_id)
    found = world.logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return next(group for group in found if group["logGroupName"] == name)


def test_a_jobs_log_group_is_made_for_the_instance_launched_for_it(world: ApiWorld) -> None:
    groups = _groups(world)
    groups.prepare("job-5", "AROAWORKERROLETEST:i-0aaaaaaaaaaaaaaaa")
    group = _group_of(world, "job-5")
    assert group["logGroupName"] == f"{world.log_group}/job-5"
    assert group["retentionInDays"] == 14 and group["kmsKeyId"].startswith("arn:aws:kms:")
    tags = world.logs.list_tags_for_resource(resourceArn=group["arn"].removesuffix(":*"))["tags"]
    assert tags == {WRITER_TAG: "AROAWORKERROLETEST:i-0aaaaaaaaaaaaaaaa"}
    # A relaunch on another instance: the tag names the new one only.
    groups.prepare("job-5", "AROAWORKERROLETEST:i-0bbbbbbbbbbbbbbbb")
    tags = world.logs.list_tags_for_resource(resourceArn=group["arn"].removesuffix(":*"))["tags"]
    assert tags == {WRITER_TAG: "AROAWORKERROLETEST:i-0bbbbbbbbbbbbbbbb"}
    with LogWriter(job_log_group(world.log_group, "job-5"), "job-5", client=world.logs) as writer:
        writer.write("from the worker")
    assert read_lines(job_log_group(world.log_group, "job-5"), "job-5", client=world.logs) == [
        "from the worker"
    ]
    groups.delete("job-5")
    groups.delete("job-5")  # already gone: nothing to do
    assert world.logs.describe_log_groups(logGroupNamePrefix=f"{world.log_group}/job-5")["logGroups"] == []
