"""The reaper's reads follow the active jobs, not the table's history."""

from __future__ import annotations

import uuid
from typing import Any

from jobs import clock
from jobs.dynamo_values import to_dynamo
from jobs.record import Job
from jobs.states import JobStatus
from tests.support.jobs import new_job
from tests.support.reaper import counting_reads, run_reaper
from tests.support.world import FakeLambdaContext, World, ago


def load_finished_jobs(world: World, count: int) -> None:
    """`count` ended jobs, written in batches (what months of history leave behind)."""
    now = clock.now_iso()
    with world.table.batch_writer() as writer:
        for n in range(count):
            job = new_job(
                JobStatus.COMPLETED if n % 4 else JobStatus.FAILED,
                owner=f"owner-{n % 50}",
                completed_at=now,
                attempt=1,
                instance_id=f"i-{n:017x}",
            )
            writer.put_item(Item=to_dynamo(job.to_item()))


def active_jobs(world: World, count: int) -> list[Job]:
    jobs = []
    for _ in range(count):
        job_id = str(uuid.uuid4())
        jobs.append(
            world.put_job(
                JobStatus.RUNNING,
                job_id=job_id,
                attempt=1,
                instance_id=world.start_instance(job_id),
                started_at=ago(minutes=10),
                heartbeat_at=ago(seconds=10),
            )
        )
        world.slots.acquire(job_id, 100)
    return jobs


def test_ten_thousand_finished_jobs_are_not_read(world: World) -> None:
    load_finished_jobs(world, 10_000)
    active = active_jobs(world, 5)

    with counting_reads(world) as reads:
        report = run_reaper(world)

    assert "Scan" not in reads.calls
    assert reads.items == len(active) + 1  # the five jobs and the slot ledger
    assert report.items_read == reads.items
    assert report.active[JobStatus.RUNNING.value] == 5
    assert report.running_instances == 5
    assert report.actions == []


def test_the_handler_runs_one_pass_on_a_schedule_event(world: World) -> None:
    from services.reaper import handler

    active_jobs(world, 2)
    handler.settings.cache_clear()
    handler.control_plane.cache_clear()
    event: dict[str, Any] = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": clock.now_iso(),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/reaper"],
        "detail": {},
    }
    summary = handler.lambda_handler(event, FakeLambdaContext(function_name="reaper"))
    assert summary["active"]["running"] == 2
    assert summary["running_instances"] == 2
    assert summary["errors"] == 0
