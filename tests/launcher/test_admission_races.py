"""Admission against everything else that may act while it runs: another job ending (its slot
frees and its launcher offers it on), the job itself cancelled, a redelivery of the job's
record to another launcher, a reaper pass. Each acts right after every DynamoDB call of the
admission in turn; then, with nobody working on any job (and no reaper pass to catch up):

- every slot is held by a job that has an instance, and every such job holds one;
- no job waits while a slot it could take is free;
- no more live instances than slots, each the one its job names.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from control_plane.admission import admit, admit_queued
from control_plane.ended import job_ended
from control_plane.launch import Outcome
from jobs import aws
from jobs.record import Job
from jobs.states import ACTIVE, JobStatus, sources_of
from tests.support.reaper import run_reaper
from tests.support.world import World, acting_after_call, ago

SLOTS = 1
# More calls than any admission below makes: the last points act after it has returned.
CALLS = range(1, 12)
HOLDING = (JobStatus.PROVISIONING, JobStatus.RUNNING, JobStatus.CANCELLING)


def running(world: World) -> Job:
    """A running job holding one of the slots."""
    job_id = str(uuid.uuid4())
    instance_id = world.start_instance(job_id)
    job = world.put_job(
        JobStatus.RUNNING, job_id=job_id, attempt=1, instance_id=instance_id, owner="other-owner"
    )
    world.slots.acquire(job_id, SLOTS)
    return job


def end(world: World, job: Job, status: JobStatus) -> Callable[[], None]:
    """The job reaches `status` and another launcher handles its stream record."""

    def act() -> None:
        world.store.transition(job.job_id, sources_of(status) & ACTIVE, status)
        job_ended(world.context(max_concurrent_jobs=SLOTS), job.job_id, job.owner, job.instance_id)

    return act


def assert_at_rest(world: World, *jobs: Job) -> None:
    now = {job.job_id: world.job(job.job_id) for job in jobs}
    with_instance = {job_id for job_id, job in now.items() if job.status in HOLDING}
    assert world.slots.holders() == with_instance, {job_id: job.status for job_id, job in now.items()}
    waiting = [job_id for job_id, job in now.items() if job.status in (JobStatus.PENDING, JobStatus.QUEUED)]
    assert not (waiting and len(with_instance) < SLOTS), f"a slot is free and {waiting} wait for it"
    live = world.live_instances()
    assert len(live) <= SLOTS
    for instance in live:
        assert instance.job_id in with_instance and now[instance.job_id].instance_id == instance.instance_id


@pytest.mark.parametrize("after_call", CALLS)
def test_a_slot_freed_while_a_launcher_finds_none_goes_to_the_queued_job(
    world: World, after_call: int
) -> None:
    holder = running(world)
    queued = world.put_job(JobStatus.QUEUED, age=timedelta(minutes=5))

    with acting_after_call(world, after_call, end(world, holder, JobStatus.COMPLETED)):
        admit_queued(world.context(max_concurrent_jobs=SLOTS))

    assert_at_rest(world, holder, queued)
    assert world.job(queued.job_id).status is JobStatus.PROVISIONING


@pytest.mark.parametrize("after_call", CALLS)
def test_a_slot_freed_while_a_new_job_is_admitted_goes_to_it(world: World, after_call: int) -> None:
    holder = running(world)
    new = world.put_job(JobStatus.PENDING)

    with acting_after_call(world, after_call, end(world, holder, JobStatus.COMPLETED)):
        admit(world.context(max_concurrent_jobs=SLOTS), new)

    assert_at_rest(world, holder, new)
    assert world.job(new.job_id).status is JobStatus.PROVISIONING


@pytest.mark.parametrize("after_call", CALLS)
def test_a_job_cancelled_during_its_admission_holds_nothing(world: World, after_call: int) -> None:
    new = world.put_job(JobStatus.PENDING)
    queued = world.put_job(JobStatus.QUEUED, age=timedelta(minutes=5))
    holder = running(world)

    def cancel_then_free_a_slot() -> None:
        end(world, new, JobStatus.CANCELLED)()
        end(world, holder, JobStatus.COMPLETED)()

    with acting_after_call(world, after_call, cancel_then_free_a_slot):
        admit(world.context(max_concurrent_jobs=SLOTS), new)

    assert_at_rest(world, new, queued, holder)
    assert world.job(new.job_id).status is JobStatus.CANCELLED


@pytest.mark.parametrize("after_call", CALLS)
def test_a_record_redelivered_to_another_launcher_launches_the_job_once(
    world: World, after_call: int
) -> None:
    new = world.put_job(JobStatus.PENDING)

    def redelivered() -> None:
        admit(world.context(max_concurrent_jobs=SLOTS), new)

    with acting_after_call(world, after_call, redelivered):
        admit(world.context(max_concurrent_jobs=SLOTS), new)

    assert_at_rest(world, new)
    assert world.job(new.job_id).status is JobStatus.PROVISIONING
    assert len(world.live_instances()) == 1


@pytest.mark.parametrize("after_call", CALLS)
def test_a_reaper_pass_during_the_admission_of_a_long_queued_job(world: World, after_call: int) -> None:
    queued_since = ago(seconds=world.settings.slot_hold_grace_seconds + 60)
    long_queued = world.put_job(JobStatus.QUEUED, age=timedelta(hours=1), updated_at=queued_since)
    other = world.put_job(JobStatus.QUEUED, age=timedelta(minutes=5), owner="other-owner")
    world.slots.acquire(long_queued.job_id, SLOTS)  # a stale slot: its launcher died

    with acting_after_call(world, after_call, lambda: run_reaper(world, max_concurrent_jobs=SLOTS)):
        admit_queued(world.context(max_concurrent_jobs=SLOTS), [world.job(long_queued.job_id)])

    assert_at_rest(world, long_queued, other)


def admitting_with_a_failed_slot_write(
    world: World, admission: Callable[[], object], *, landed: bool
) -> None:
    """`admission` with its first UpdateItem (its slot write) failing with an error botocore
    has given up on (a throttle that lasts, a connection dropped): before it reaches the
    table, or once it has `landed` and its answer is lost. The error reaches the caller."""
    client = aws.table(world.settings.jobs_table_name).meta.client
    event = f"{'after' if landed else 'before'}-call.dynamodb.UpdateItem"

    def fail(**_: Any) -> None:
        client.meta.events.unregister(event, fail)
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "UpdateItem")

    client.meta.events.register(event, fail)
    try:
        with pytest.raises(ClientError):
            admission()
    finally:
        client.meta.events.unregister(event, fail)


@pytest.mark.parametrize("landed", [False, True], ids=["write-lost", "answer-lost"])
def test_a_failed_slot_write_does_not_hold_up_the_redelivered_record(world: World, landed: bool) -> None:
    new = world.put_job(JobStatus.PENDING)
    admitting_with_a_failed_slot_write(
        world, lambda: admit(world.context(max_concurrent_jobs=SLOTS), new), landed=landed
    )

    # Redelivered to another invocation: it must not wait for the claim's lease to pass.
    assert admit(world.context(max_concurrent_jobs=SLOTS), new) is Outcome.LAUNCHED
    assert_at_rest(world, new)


@pytest.mark.parametrize("landed", [False, True], ids=["write-lost", "answer-lost"])
def test_a_failed_slot_write_does_not_hold_up_the_next_free_slot(world: World, landed: bool) -> None:
    queued = world.put_job(JobStatus.QUEUED, age=timedelta(minutes=5))
    holder = running(world)
    admitting_with_a_failed_slot_write(
        world, lambda: admit_queued(world.context(max_concurrent_jobs=SLOTS)), landed=landed
    )

    end(world, holder, JobStatus.COMPLETED)()

    assert_at_rest(world, queued, holder)


@pytest.mark.parametrize("landed", [False, True], ids=["write-lost", "answer-lost"])
def test_a_job_cancelled_after_its_slot_write_failed_holds_nothing(world: World, landed: bool) -> None:
    new = world.put_job(JobStatus.PENDING)
    admitting_with_a_failed_slot_write(
        world, lambda: admit(world.context(max_concurrent_jobs=SLOTS), new), landed=landed
    )

    end(world, new, JobStatus.CANCELLED)()

    assert_at_rest(world, new)
