"""End to end, a SerenDB project target as the replicator CLI's project picker sends it:
the worker creates the target database through the console API (the local stand-in in
front of the target server), the job completes, and the console key is found nowhere:
not in the items after the job, the logs, the answers, any process's argv or
environment while it ran, or the instance's user-data."""

from __future__ import annotations

import base64
import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jobs.job_logs import job_log_group
from local_cloud.console import Branch, ConsoleStandIn, Project
from local_cloud.postgres import LocalPostgres
from local_cloud.sample_data import SAMPLE_DATABASE, row_counts
from tests.support.e2e import running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]


class ProcessWatch:
    """Reads every process's argv and environment until stopped; remembers where it saw `secret`."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.found: set[str] = set()
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                for part in ("cmdline", "environ"):
                    with contextlib.suppress(OSError):
                        if self.secret in (entry / part).read_bytes():
                            self.found.add(f"{entry.name}/{part}")
            self.scans += 1
            self._stop.wait(0.02)

    @contextlib.contextmanager
    def running(self) -> Iterator[ProcessWatch]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)


def test_project_target_job_completes_and_its_key_is_nowhere(
    tmp_path: Path, source: LocalPostgres, target: LocalPostgres
) -> None:
    key = f"seren_e2e-{uuid.uuid4().hex}"
    project = Project("proj-e2e", "e2e", [Branch("br-e2e", "main", is_default=True)])
    with ConsoleStandIn(target.url(), key, [project]) as console:
        with running_stack(tmp_path / "state", "--seren-console-url", console.url) as stack:
            body = {
                "schema_version": "1.0",
                "command": "init",
                "source_url": source.url(SAMPLE_DATABASE),
                "target_url": target.url(SAMPLE_DATABASE),
                "target_project_id": project.id,
                "target_branch_id": "br-e2e",
                "target_databases": [SAMPLE_DATABASE],
                "seren_api_key": key,
                "filter": {
                    "include_databases": [SAMPLE_DATABASE],
                    "exclude_databases": None,
                    "include_tables": None,
                    "exclude_tables": None,
                },
                "options": {
                    "drop_existing": False,
                    "enable_sync": False,
                    "log_level": "info",
                    "estimated_size_bytes": 1000,
                    "job_timeout_seconds": 600,
                },
            }
            with ProcessWatch(key).running() as watch:
                status, answer = stack.api("POST", "/jobs", body)
                assert status == 201, answer
                job_id = answer["job_id"]
                job, _ = stack.follow(job_id, timeout=120)
                instance_id = stack.item(job_id)["instance_id"]
                stack.wait_no_processes(instance_id)
            assert job["status"] == "completed", job
            assert (job["target_project_id"], job["target_branch_id"], job["target_databases"]) == (
                project.id,
                "br-e2e",
                [SAMPLE_DATABASE],
            )
            assert ("POST", "/api/projects/proj-e2e/branches/br-e2e/databases") in console.requests
            with psycopg.connect(target.url(), autocommit=True) as conn:
                query = "SELECT 1 FROM pg_database WHERE datname = %s"
                assert conn.execute(query, [SAMPLE_DATABASE]).fetchone()
            assert row_counts(target.url()) == row_counts(source.url())
            assert watch.scans > 0 and watch.found == set()

            stack.api("GET", f"/jobs/{job_id}/logs")
            stack.api("GET", "/jobs")
            assert stack.answers and not any(key in text for text in stack.answers)
            item = stack.client("dynamodb").get_item(
                TableName=stack.info["table_name"], Key={"job_id": {"S": job_id}}, ConsistentRead=True
            )["Item"]
            assert "credentials" not in item and key not in repr(item)
            logs = stack.client("logs")
            group = job_log_group(stack.info["worker_log_group"], job_id)
            events = logs.get_log_events(logGroupName=group, logStreamName=job_id)["events"]
            assert any("created database" in event["message"] for event in events)
            assert not any(key in event["message"] for event in events)
            user_data = stack.client("ec2").describe_instance_attribute(
                InstanceId=instance_id, Attribute="userData"
            )["UserData"]["Value"]
            assert key not in base64.b64decode(user_data).decode()
        for path in (tmp_path / "state").rglob("*"):
            if path.is_file():
                assert key.encode() not in path.read_bytes(), path
