"""Worker against reaper, reaper against reaper: one outcome, one instance per attempt."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from jobs import clock
from jobs.record import Job
from jobs.states import JobStatus
from jobs.store import JobStore, WriteResult
from tests.support.reaper import run_reaper
from tests.support.world import World, ago


def _running(world: World, **fields: Any) -> Job:
    job_id = str(uuid.uuid4())
    instance_id = world.start_instance(job_id)
    job = world.put_job(
        JobStatus.RUNNING,
        job_id=job_id,
        attempt=1,
        instance_id=instance_id,
        started_at=ago(minutes=30),
        **fields,
    )
    world.slots.acquire(job_id, 100)
    return job


def _worker_writes_after_the_reaper_reads(monkeypatch: pytest.MonkeyPatch, write: Any) -> None:
    """Let the worker write between the reaper's read of the running jobs and its own write."""
    real = JobStore.active_jobs

    def read_then_worker_writes(self: JobStore, status: JobStatus) -> Iterator[Job]:
        jobs = list(real(self, status))
        if status is JobStatus.RUNNING:
            for job in jobs:
                write(job)
        return iter(jobs)

    monkeypatch.setattr(JobStore, "active_jobs", read_then_worker_writes)


def test_a_worker_finishing_while_the_reaper_reaps_keeps_its_outcome(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = ago(minutes=10)
    job = _running(world, heartbeat_at=stale, updated_at=stale)
    _worker_writes_after_the_reaper_reads(
        monkeypatch,
        lambda seen: world.store.transition(
            seen.job_id, [JobStatus.RUNNING], JobStatus.COMPLETED, only_if={"instance_id": seen.instance_id}
        ),
    )

    report = run_reaper(world)

    assert world.job(job.job_id).status is JobStatus.COMPLETED
    assert world.job(job.job_id).error is None
    assert report.count("reaped_stale") == 0
    assert world.instance_state(str(job.instance_id)) == "running"  # the worker ends it itself


def test_a_heartbeat_landing_while_the_reaper_reaps_keeps_the_job(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = ago(minutes=10)
    job = _running(world, heartbeat_at=stale, updated_at=stale)
    _worker_writes_after_the_reaper_reads(
        monkeypatch, lambda seen: world.store.update_active(seen.job_id, {"heartbeat_at": clock.now_iso()})
    )

    run_reaper(world)

    assert world.job(job.job_id).status is JobStatus.RUNNING
    assert world.instance_state(str(job.instance_id)) == "running"


def test_the_reaper_alone_fails_a_silent_last_attempt(world: World) -> None:
    """The branch of the race above where the reaper writes first, played without the race."""
    stale = ago(minutes=10)
    job = _running(world, heartbeat_at=stale, updated_at=stale)
    run_reaper(world, max_launch_attempts=1)
    final = world.job(job.job_id)
    assert final.status is JobStatus.FAILED and "heartbeat" in str(final.error)
    assert world.instance_state(str(job.instance_id)) == "terminated"
    assert job.job_id not in world.slots.holders()


def test_the_reaper_after_the_worker_finished_changes_nothing(world: World) -> None:
    stale = ago(minutes=10)
    job = _running(world, heartbeat_at=stale, updated_at=stale)
    world.store.transition(job.job_id, [JobStatus.RUNNING], JobStatus.COMPLETED)
    run_reaper(world)
    assert world.job(job.job_id).status is JobStatus.COMPLETED


def _worker_and_reaper_at_once(world: World, job: Job) -> WriteResult:
    """The worker's final write and a reaper pass, released together; the worker's result."""
    start = threading.Barrier(2)
    worker_result: list[WriteResult] = []

    def worker() -> None:
        start.wait()
        worker_result.append(world.store.transition(job.job_id, [JobStatus.RUNNING], JobStatus.COMPLETED))

    def reaper() -> None:
        start.wait()
        # One attempt allowed: a lost one ends the job rather than relaunching it.
        run_reaper(world, max_launch_attempts=1)

    threads = [threading.Thread(target=worker), threading.Thread(target=reaper)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return worker_result[0]


def test_worker_and_reaper_at_once_give_exactly_one_outcome(world: World) -> None:
    for _ in range(8):
        stale = ago(minutes=10)
        job = _running(world, heartbeat_at=stale, updated_at=stale)

        worker_result = _worker_and_reaper_at_once(world, job)

        final = world.job(job.job_id)
        if worker_result.ok:  # the worker's outcome stands; its stream record frees the slot
            assert final.status is JobStatus.COMPLETED and final.error is None
        else:  # the reaper's stands, and the reaper cleaned up
            assert final.status is JobStatus.FAILED and "heartbeat" in str(final.error)
            assert world.instance_state(str(job.instance_id)) == "terminated"
            assert job.job_id not in world.slots.holders()


def test_two_reapers_at_once_relaunch_once(world: World) -> None:
    job_id = str(uuid.uuid4())
    world.put_job(
        JobStatus.PROVISIONING,
        job_id=job_id,
        attempt=1,
        instance_id=world.start_instance(job_id),
        launched_at=ago(minutes=20),
    )
    world.slots.acquire(job_id, 100)
    pending = [world.put_job(age=timedelta(minutes=5)) for _ in range(2)]
    start = threading.Barrier(3)

    def reaper() -> None:
        start.wait()
        run_reaper(world)

    threads = [threading.Thread(target=reaper) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    relaunched = world.job(job_id)
    assert relaunched.attempt == 2
    assert [i.instance_id for i in world.live_instances(job_id)] == [relaunched.instance_id]
    for job in pending:
        assert len(world.live_instances(job.job_id)) == 1
        assert world.job(job.job_id).status is JobStatus.PROVISIONING
    assert world.slots.holders() == {job_id, *(job.job_id for job in pending)}
