"""Every branch of the reaper, with job and instance states arranged explicitly."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from jobs import clock
from jobs.record import Job
from jobs.states import JobStatus
from tests.support.reaper import run_reaper
from tests.support.world import World, ago


def launched(
    world: World, status: JobStatus, *, attempt: int = 1, live: bool = True, **fields: object
) -> Job:
    """A job in `status` holding a slot, with an instance of ours for `attempt` (or, when
    not `live`, pointing at an instance that is gone)."""
    job_id = str(uuid.uuid4())
    instance_id = world.start_instance(job_id, attempt) if live else "i-0123456789abcdef0"
    job = world.put_job(status, job_id=job_id, attempt=attempt, instance_id=instance_id, **fields)
    world.slots.acquire(job.job_id, 100)
    return job


# -- provisioning -----------------------------------------------------------------------


def test_provisioning_within_its_grace_is_left_alone(world: World) -> None:
    job = launched(world, JobStatus.PROVISIONING, launched_at=ago(minutes=5))
    report = run_reaper(world)
    assert report.actions == []
    assert world.job(job.job_id).status is JobStatus.PROVISIONING


def test_provisioning_whose_instance_is_gone_is_relaunched(world: World) -> None:
    job = launched(world, JobStatus.PROVISIONING, live=False, launched_at=ago(minutes=20))

    run_reaper(world)

    relaunched = world.job(job.job_id)
    assert relaunched.status is JobStatus.PROVISIONING
    assert relaunched.attempt == 2
    [instance] = world.live_instances(job.job_id)
    assert relaunched.instance_id == instance.instance_id
    assert instance.attempt == 2
    assert world.slots.holders() == {job.job_id}


def test_provisioning_whose_worker_never_started_is_terminated_then_relaunched(world: World) -> None:
    job = launched(world, JobStatus.PROVISIONING, launched_at=ago(minutes=20))

    run_reaper(world)

    assert world.instance_state(str(job.instance_id)) == "terminated"
    relaunched = world.job(job.job_id)
    assert relaunched.attempt == 2
    assert relaunched.instance_id != job.instance_id
    assert [i.instance_id for i in world.live_instances(job.job_id)] == [relaunched.instance_id]


def test_provisioning_out_of_attempts_fails_and_lets_go(world: World) -> None:
    job = launched(world, JobStatus.PROVISIONING, attempt=2, launched_at=ago(minutes=20))

    report = run_reaper(world, max_launch_attempts=2)

    failed = world.job(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and "did not start" in failed.error
    assert "after 2 attempts" in failed.error
    assert world.instance_state(str(job.instance_id)) == "terminated"
    assert world.slots.holders() == set()
    assert report.count("attempt_lost") == 1


def test_max_launch_attempts_is_a_setting(world: World) -> None:
    job = launched(world, JobStatus.PROVISIONING, attempt=2, launched_at=ago(minutes=20))
    run_reaper(world, max_launch_attempts=3)
    assert world.job(job.job_id).attempt == 3


# -- running and cancelling ---------------------------------------------------------------


def test_a_stale_heartbeat_retries_the_job_on_a_new_instance_saying_when_it_was_lost(world: World) -> None:
    last = ago(minutes=7)
    job = launched(world, JobStatus.RUNNING, started_at=ago(minutes=30), heartbeat_at=last, updated_at=last)

    report = run_reaper(world)

    retried = world.job(job.job_id)
    assert (retried.status, retried.attempt) == (JobStatus.PROVISIONING, 2)
    assert retried.instance_id not in (None, job.instance_id)
    [lost] = retried.lost_attempts
    assert (lost.attempt, lost.instance_id) == (1, job.instance_id)
    assert "heartbeat lost" in lost.reason and last in lost.reason
    assert world.instance_state(str(job.instance_id)) == "terminated"
    assert world.slots.holders() == {job.job_id}
    assert report.count("attempt_lost") == 1


def test_a_stale_heartbeat_on_the_last_attempt_fails_the_job_with_every_reason(world: World) -> None:
    last = ago(minutes=7)
    earlier = [
        {"attempt": 1, "kind": "interrupted", "reason": "Spot interruption notice", "at": ago(hours=1)}
    ]
    job = launched(
        world,
        JobStatus.RUNNING,
        attempt=2,
        started_at=ago(minutes=30),
        heartbeat_at=last,
        updated_at=last,
        lost_attempts=earlier,
    )

    run_reaper(world, max_launch_attempts=2)

    failed = world.job(job.job_id)
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert "attempt 1: Spot interruption notice" in failed.error
    assert "attempt 2: worker heartbeat lost" in failed.error
    assert world.instance_state(str(job.instance_id)) == "terminated"
    assert world.slots.holders() == set()


def test_a_fresh_heartbeat_keeps_the_job(world: World) -> None:
    job = launched(world, JobStatus.RUNNING, started_at=ago(hours=2), heartbeat_at=ago(seconds=20))
    assert run_reaper(world).actions == []
    assert world.job(job.job_id).status is JobStatus.RUNNING
    assert world.instance_state(str(job.instance_id)) == "running"


def test_a_job_past_its_deadline_times_out(world: World) -> None:
    job = launched(
        world,
        JobStatus.RUNNING,
        started_at=ago(hours=2),
        heartbeat_at=ago(seconds=10),
        options={"job_timeout_seconds": 3600},
    )

    report = run_reaper(world)

    assert world.job(job.job_id).status is JobStatus.TIMEOUT
    assert world.instance_state(str(job.instance_id)) == "terminated"
    assert world.slots.holders() == set()
    assert report.count("timed_out") == 1


def test_the_deadline_allows_its_grace(world: World) -> None:
    job = launched(
        world,
        JobStatus.RUNNING,
        started_at=ago(seconds=3600 + 300),
        heartbeat_at=ago(seconds=10),
        options={"job_timeout_seconds": 3600},
    )
    run_reaper(world)  # grace 600 s
    assert world.job(job.job_id).status is JobStatus.RUNNING


def test_cancelling_past_its_grace_is_cancelled(world: World) -> None:
    job = launched(world, JobStatus.CANCELLING, started_at=ago(hours=1), cancel_requested_at=ago(minutes=6))

    run_reaper(world)

    assert world.job(job.job_id).status is JobStatus.CANCELLED
    assert world.instance_state(str(job.instance_id)) == "terminated"
    assert world.slots.holders() == set()


def test_cancelling_within_its_grace_is_left_to_the_worker(world: World) -> None:
    job = launched(
        world,
        JobStatus.CANCELLING,
        started_at=ago(hours=1),
        heartbeat_at=ago(seconds=5),
        cancel_requested_at=ago(minutes=1),
    )
    run_reaper(world)
    assert world.job(job.job_id).status is JobStatus.CANCELLING


# -- pending and queued -------------------------------------------------------------------


def test_a_pending_job_whose_record_was_lost_is_launched(world: World) -> None:
    lost = world.put_job(age=timedelta(minutes=4))
    fresh = world.put_job(age=timedelta(seconds=30))

    run_reaper(world)

    assert world.job(lost.job_id).status is JobStatus.PROVISIONING
    assert world.job(fresh.job_id).status is JobStatus.PENDING  # its stream record is on the way


def test_queued_jobs_take_the_free_slots_oldest_first(world: World) -> None:
    launched(world, JobStatus.RUNNING, started_at=ago(minutes=1), heartbeat_at=ago(seconds=5))
    queued = [world.put_job(JobStatus.QUEUED, age=timedelta(minutes=10 - n)) for n in range(4)]

    run_reaper(world)  # 3 slots, 1 used

    statuses = [world.job(job.job_id).status for job in queued]
    assert statuses == [JobStatus.PROVISIONING, JobStatus.PROVISIONING, JobStatus.QUEUED, JobStatus.QUEUED]
    assert len(world.slots.holders()) == 3


# -- orphans ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_the_instance_of_an_ended_job_is_terminated(world: World, status: JobStatus) -> None:
    job = world.put_job(status)
    instance_id = world.start_instance(job.job_id)
    report = run_reaper(world)
    assert world.instance_state(instance_id) == "terminated"
    assert report.count("orphan_terminated") == 1


def test_a_cancelled_provisioning_job_loses_its_instance(world: World) -> None:
    job = launched(world, JobStatus.PROVISIONING, launched_at=ago(minutes=1))
    world.store.transition(job.job_id, [JobStatus.PROVISIONING], JobStatus.CANCELLED)
    run_reaper(world)
    assert world.instance_state(str(job.instance_id)) == "terminated"


def test_the_instance_of_a_missing_or_expired_job_is_terminated(world: World) -> None:
    missing = world.start_instance("no-such-job")
    expired = world.put_job(JobStatus.COMPLETED, expires_at=clock.epoch(clock.now()) - 60)
    of_expired = world.start_instance(expired.job_id)
    run_reaper(world)
    assert world.instance_state(missing) == "terminated"
    assert world.instance_state(of_expired) == "terminated"


def test_an_old_instance_its_job_no_longer_points_at_is_terminated(world: World) -> None:
    job = launched(world, JobStatus.RUNNING, started_at=ago(minutes=30))
    stray = world.start_instance(job.job_id, attempt=1)
    later = clock.now() + timedelta(minutes=15)  # the stray is past the orphan grace by then
    world.store.update_active(job.job_id, {"heartbeat_at": clock.iso(later)})

    run_reaper(world, now=later)

    assert world.instance_state(stray) == "terminated"
    assert world.instance_state(str(job.instance_id)) == "running"


def test_a_young_instance_of_a_launch_in_flight_is_kept(world: World) -> None:
    job = world.put_job(JobStatus.PENDING)
    instance_id = world.start_instance(job.job_id)
    run_reaper(world)
    assert world.instance_state(instance_id) == "running"


def test_instances_of_another_deployment_are_not_ours(world: World) -> None:
    theirs = world.start_instance("their-job", managed_by="another-deployment")
    report = run_reaper(world)
    assert world.instance_state(theirs) == "running"
    assert report.running_instances == 0


# -- slot ledger and expired items ---------------------------------------------------------


def test_the_slot_ledger_is_reconciled_with_the_jobs(world: World) -> None:
    ended = world.put_job(JobStatus.COMPLETED)
    in_flight = world.put_job(JobStatus.PENDING, age=timedelta(seconds=20))
    unlaunched = world.put_job(JobStatus.QUEUED, age=timedelta(hours=1))
    # A launcher that got stuck: its claim's lease has passed, so the reaper launches the job
    # itself (while the lease holds, the job may be launching: tests/reaper/test_slot_races.py).
    world.claims.claim(
        unlaunched.job_id, 1, "stuck-launcher", now_epoch=clock.epoch(clock.now()) - 301, lease_seconds=300
    )
    unrecorded = launched(world, JobStatus.RUNNING, started_at=ago(minutes=1), heartbeat_at=ago(seconds=5))
    world.slots.release(unrecorded.job_id)
    for job_id in (ended.job_id, "vanished-job", in_flight.job_id, unlaunched.job_id):
        world.slots.acquire(job_id, 100)

    report = run_reaper(world)

    assert world.slots.holders() == {in_flight.job_id, unrecorded.job_id, unlaunched.job_id}
    assert world.job(unlaunched.job_id).status is JobStatus.PROVISIONING
    assert report.count("slot_released") == 2
    assert report.count("slot_restored") == 1


def test_an_expired_unfinished_job_is_deleted_with_its_instance_and_slot(world: World) -> None:
    job = launched(
        world,
        JobStatus.RUNNING,
        started_at=ago(minutes=5),
        heartbeat_at=ago(seconds=5),
        expires_at=clock.epoch(clock.now()) - 1,
    )

    report = run_reaper(world)

    assert world.store.get(job.job_id, include_expired=True) is None
    assert world.instance_state(str(job.instance_id)) == "terminated"
    assert world.slots.holders() == set()
    assert report.count("deleted_expired") == 1


def test_thresholds_are_settings(world: World) -> None:
    job = launched(world, JobStatus.RUNNING, started_at=ago(minutes=3), heartbeat_at=ago(minutes=2))
    run_reaper(world)
    assert world.job(job.job_id).status is JobStatus.RUNNING
    run_reaper(world, heartbeat_timeout_seconds=60)
    assert world.job(job.job_id).lost_attempts != []
