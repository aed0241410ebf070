"""Duplicate, reordered and concurrent stream delivery: one instance per job attempt."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from control_plane import admission
from control_plane.launch import Outcome
from jobs import clock, instances
from jobs.states import JobStatus
from jobs.store import JobStore
from tests.support.launcher import invoke, invoke_as
from tests.support.world import World, batch, inserted, modified


@pytest.fixture
def run_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every RunInstances that reached EC2, by job id."""
    calls: list[str] = []
    lock = threading.Lock()
    real = instances.Ec2Fleet._run_one

    def counted(
        fleet: instances.Ec2Fleet, request: instances.LaunchRequest, *args: Any
    ) -> instances.Instance:
        with lock:
            calls.append(request.job_id)
        return real(fleet, request, *args)

    monkeypatch.setattr(instances.Ec2Fleet, "_run_one", counted)
    return calls


def test_the_same_record_twice_in_a_batch_and_again_later_launches_once(
    world: World, run_calls: list[str]
) -> None:
    job = world.put_job()
    assert invoke(batch(inserted(job), inserted(job))) == []
    assert invoke(batch(inserted(job))) == []
    assert len(world.live_instances(job.job_id)) == 1
    assert run_calls == [job.job_id]
    assert world.slots.holders() == {job.job_id}


def test_a_late_duplicate_after_the_job_ended_launches_nothing(world: World, run_calls: list[str]) -> None:
    job = world.put_job()
    invoke(batch(inserted(job)))
    launched = world.job(job.job_id)
    world.store.transition(job.job_id, [JobStatus.PROVISIONING], JobStatus.RUNNING)
    running = world.job(job.job_id)
    done = world.store.transition(job.job_id, [JobStatus.RUNNING], JobStatus.COMPLETED).job
    assert done is not None and launched.instance_id

    invoke(batch(modified(running, done), inserted(job)))

    assert world.slots.holders() == set()
    # The ended job's instance is terminated with its slot, and nothing new is started.
    assert world.live_instances(job.job_id) == []
    assert run_calls == [job.job_id]


def test_a_cancel_delivered_before_the_insert_launches_nothing(world: World, run_calls: list[str]) -> None:
    job = world.put_job()
    cancelled = world.store.transition(job.job_id, [JobStatus.PENDING], JobStatus.CANCELLED).job
    assert cancelled is not None

    invoke(batch(modified(job, cancelled), inserted(job)))

    assert run_calls == []
    assert world.slots.holders() == set()


@pytest.mark.parametrize(("jobs", "limit"), [(10, 10), (10, 3)])
def test_launchers_racing_on_overlapping_batches_start_one_instance_per_job(
    world: World, run_calls: list[str], jobs: int, limit: int
) -> None:
    pending = [world.put_job() for _ in range(jobs)]
    records = [inserted(job) for job in pending]
    start = threading.Barrier(4)
    failures: list[Any] = []

    def launcher(seed: int) -> None:
        ctx = world.context(max_concurrent_jobs=limit, max_running_jobs_per_owner=limit)
        chosen = random.Random(seed).sample(records, k=len(records))
        start.wait()
        failures.extend(invoke_as(ctx, batch(*chosen[: jobs // 2])))
        failures.extend(invoke_as(ctx, batch(*reversed(chosen))))

    threads = [threading.Thread(target=launcher, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    launched = [job for job in pending if world.job(job.job_id).status is JobStatus.PROVISIONING]
    assert len(launched) == limit
    assert sorted(run_calls) == sorted(job.job_id for job in launched)
    for job in launched:
        [instance] = world.live_instances(job.job_id)
        assert world.job(job.job_id).instance_id == instance.instance_id
    assert world.slots.holders() == {job.job_id for job in launched}
    for job in pending:
        if job not in launched:
            assert world.job(job.job_id).status is JobStatus.QUEUED


def test_an_attempt_claimed_by_a_live_launcher_is_left_to_it(world: World, run_calls: list[str]) -> None:
    job = world.put_job()
    assert world.claims.claim(
        job.job_id, 1, "other-launcher", now_epoch=clock.epoch(clock.now()), lease_seconds=300
    )

    assert admission.admit(world.context(), job) is Outcome.IN_FLIGHT
    assert run_calls == []
    assert world.job(job.job_id).status is JobStatus.PENDING


def test_the_instance_of_a_launcher_that_died_is_adopted_not_doubled(
    world: World, run_calls: list[str]
) -> None:
    job = world.put_job()
    long_ago = clock.epoch(clock.now()) - 3600
    world.claims.claim(job.job_id, 1, "dead-launcher", now_epoch=long_ago, lease_seconds=300)
    left_behind = world.start_instance(job.job_id, attempt=1)
    run_calls.clear()

    assert invoke(batch(inserted(job))) == []

    assert run_calls == []
    assert world.job(job.job_id).instance_id == left_behind
    assert len(world.live_instances(job.job_id)) == 1


def test_a_write_that_fails_after_the_launch_is_retried_without_a_second_instance(
    world: World, run_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = world.put_job()
    record = inserted(job)
    real = JobStore.transition
    throttled = [True]

    def flaky(self: JobStore, job_id: str, sources: Any, to_status: JobStatus, **kwargs: Any) -> Any:
        if to_status is JobStatus.PROVISIONING and throttled:
            throttled.clear()
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "UpdateItem")
        return real(self, job_id, sources, to_status, **kwargs)

    monkeypatch.setattr(JobStore, "transition", flaky)

    assert invoke(batch(record)) == [record["dynamodb"]["SequenceNumber"]]
    assert world.job(job.job_id).status is JobStatus.PENDING
    assert invoke(batch(record)) == []  # the redelivery

    assert run_calls == [job.job_id]
    [instance] = world.live_instances(job.job_id)
    assert world.job(job.job_id).instance_id == instance.instance_id
