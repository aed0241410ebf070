"""A worker's reports reach its job item through the stream, so the item can lag behind what
the worker said (a backed-up or stalled launcher, a record the event source mapping gave up
on). Before the reaper records a lost attempt it reads the worker's report item: a worker
that beats, or that ended its job, is not taken for lost."""

from __future__ import annotations

import uuid
from typing import Any

from jobs import clock
from jobs.dynamo_values import to_dynamo
from jobs.record import Job
from jobs.reports import REPORT_ATTRIBUTE
from jobs.states import JobStatus
from jobs.worker_identity import worker_user_id
from tests.support.reaper import run_reaper
from tests.support.world import WORKER_ROLE_ID, World, ago


def running_with_report(world: World, heartbeat_at: str, **report: Any) -> Job:
    """A running job whose item shows its last heartbeat at `heartbeat_at`, and the worker's
    report item holding `report`, whose stream record the launcher has not applied yet."""
    job_id = str(uuid.uuid4())
    instance_id = world.start_instance(job_id, 1)
    world.table.put_item(
        Item={
            "job_id": worker_user_id(WORKER_ROLE_ID, instance_id),
            REPORT_ATTRIBUTE: to_dynamo({"job_id": job_id, "attempt": 1, **report}),
            "expires_at": clock.epoch(clock.now()) + 3600,
        }
    )
    fields = {"instance_id": instance_id, "started_at": ago(minutes=20), "heartbeat_at": heartbeat_at}
    job = world.put_job(JobStatus.RUNNING, job_id=job_id, attempt=1, **fields)
    world.slots.acquire(job_id, 100)
    return job


def test_a_heartbeat_still_in_the_stream_keeps_the_job_running(world: World) -> None:
    job = running_with_report(world, ago(minutes=10), seq=40, kind="beat", at=clock.now_iso())
    run_reaper(world)
    stored = world.job(job.job_id)
    assert stored.status is JobStatus.RUNNING and stored.attempt == 1 and not stored.lost_attempts
    assert world.instance_state(str(job.instance_id)) == "running"


def test_an_outcome_still_in_the_stream_ends_the_job_its_worker_finished(world: World) -> None:
    """The worker waited for its outcome, did not see it applied, and terminated its instance:
    the job completed, it must not be run again."""
    outcome = {"seq": 41, "kind": "outcome", "status": "completed", "exit_code": 0, "at": ago(minutes=2)}
    job = running_with_report(world, ago(minutes=3), **outcome)
    world.fleet.terminate([str(job.instance_id)])
    run_reaper(world)
    stored = world.job(job.job_id)
    assert stored.status is JobStatus.COMPLETED and stored.attempt == 1 and not stored.lost_attempts
    assert world.live_instances(job.job_id) == []
