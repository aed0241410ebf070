"""The launcher copies a worker's report (a stream record of its report item) into the job
item, taking the reporting instance from the item's key."""

from __future__ import annotations

from typing import Any

from jobs import clock
from jobs.reports import REPORT_ATTRIBUTE
from jobs.states import JobStatus
from jobs.worker_identity import worker_user_id
from tests.support.launcher import invoke
from tests.support.world import WORKER_ROLE_ID, World, batch, stream_record


def report_record(instance_id: str, report: dict[str, Any], event: str = "MODIFY") -> dict[str, Any]:
    key = worker_user_id(WORKER_ROLE_ID, instance_id)
    return stream_record(event, new={"job_id": key, REPORT_ATTRIBUTE: report, "expires_at": 1})


def start(job_id: str, seq: int = 1) -> dict[str, Any]:
    return {"job_id": job_id, "attempt": 1, "seq": seq, "kind": "start", "at": clock.now_iso()}


def test_a_start_report_moves_the_job_of_the_reporting_instance_to_running(world: World) -> None:
    job = world.put_job(JobStatus.PROVISIONING, instance_id="i-0000000000000000a", attempt=1)
    assert invoke(batch(report_record("i-0000000000000000a", start(job.job_id), "INSERT"))) == []
    stored = world.job(job.job_id)
    assert stored.status is JobStatus.RUNNING and stored.started_at is not None
    assert stored.reported is not None and stored.reported.covers("i-0000000000000000a", 1)


def test_a_report_from_another_instance_changes_nothing(world: World) -> None:
    job = world.put_job(JobStatus.RUNNING, instance_id="i-0000000000000000a", attempt=1)
    outcome = {
        **start(job.job_id), "kind": "outcome", "status": "failed", "error": "see https://phishing.example",
    }  # fmt: skip
    assert invoke(batch(report_record("i-0000000000000000b", outcome))) == []
    stored = world.job(job.job_id)
    assert stored.status is JobStatus.RUNNING and stored.error is None and stored.reported is None


def test_a_report_that_does_not_parse_is_skipped_not_retried(world: World) -> None:
    job = world.put_job(JobStatus.PROVISIONING, instance_id="i-0000000000000000a", attempt=1)
    broken = {**start(job.job_id), "kind": "promote-to-admin"}
    assert invoke(batch(report_record("i-0000000000000000a", broken))) == []
    assert world.job(job.job_id).status is JobStatus.PROVISIONING
