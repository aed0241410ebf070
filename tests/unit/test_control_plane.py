"""Control-plane decisions on in-memory fakes: what a job holds per status, settling,
admission, launch outcomes and the change rules."""

from __future__ import annotations

from datetime import timedelta

import pytest

from control_plane.admission import admit, admit_queued, in_line
from control_plane.changes import Change, StreamChange, classify
from control_plane.ended import job_ended
from control_plane.holdings import NOTHING, Holdings
from control_plane.launch import Outcome, launch
from control_plane.settle import settle
from jobs import clock
from jobs.states import ACTIVE, TERMINAL, JobStatus
from tests.support.fakes import FakeFleet, FakeJobs, FakeSlots, fake_control_plane, use_test_metrics
from tests.support.jobs import new_job


@pytest.fixture(autouse=True)
def _metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_metrics(monkeypatch)


def parts(cp) -> tuple[FakeJobs, FakeSlots, FakeFleet]:  # type: ignore[no-untyped-def]
    return cp.jobs, cp.slots, cp.fleet


@pytest.mark.parametrize("status", list(JobStatus))
def test_a_job_holds_a_slot_and_its_instance_exactly_while_it_has_an_instance_and_its_place_until_it_ends(
    status: JobStatus,
) -> None:
    job = new_job(status, instance_id="i-1", attempt=1)
    held = Holdings.of(job, clock.epoch(clock.now()))
    has_instance = status in (JobStatus.PROVISIONING, JobStatus.RUNNING, JobStatus.CANCELLING)
    if has_instance:
        assert held == Holdings(place=True, slot=True, instance_id="i-1")
    else:
        assert held == (NOTHING if status.is_terminal else Holdings(place=True, slot=False, instance_id=None))


def test_a_missing_or_expired_job_holds_nothing() -> None:
    assert Holdings.of(None, clock.epoch(clock.now())) == NOTHING
    expired = new_job(JobStatus.RUNNING, instance_id="i-1", retention=timedelta(seconds=-1))
    assert Holdings.of(expired, clock.epoch(clock.now())) == NOTHING


def test_settling_an_ended_job_terminates_its_instance_and_frees_its_slot_and_place() -> None:
    cp = fake_control_plane(new_job(JobStatus.COMPLETED, job_id="job-1", owner="alice"))
    _, slots, fleet = parts(cp)
    instance = fleet.start("job-1", 1)
    slots.acquire("job-1", 2)
    settle(cp, "job-1", "alice", None, instances=[instance.instance_id])
    assert fleet.terminated == [instance.instance_id]
    assert slots.holders() == set()
    assert cp.owners.unfinished == {"alice": set()}  # type: ignore[attr-defined]


def test_settling_a_job_with_an_instance_keeps_its_slot_and_instance_and_ends_strays() -> None:
    cp = fake_control_plane()
    _, slots, fleet = parts(cp)
    mine, stray = fleet.start("job-1", 2), fleet.start("job-1", 1)
    job = new_job(JobStatus.RUNNING, job_id="job-1", instance_id=mine.instance_id, attempt=2)
    slots.acquire("job-1", 2)
    settle(cp, "job-1", job.owner, job, instances=[mine.instance_id, stray.instance_id])
    assert fleet.terminated == [stray.instance_id]
    assert slots.holders() == {"job-1"}


def test_settling_a_waiting_job_gives_its_slot_back_and_keeps_its_place() -> None:
    queued = new_job(JobStatus.QUEUED, job_id="job-1", owner="alice")
    cp = fake_control_plane(queued)
    cp.slots.acquire("job-1", 2)
    settle(cp, "job-1", "alice", queued)
    assert cp.slots.holders() == set()
    assert cp.owners.unfinished == {"alice": {"job-1"}}  # type: ignore[attr-defined]


def test_admission_launches_while_slots_are_free_then_queues() -> None:
    first, second, third = (new_job() for _ in range(3))
    cp = fake_control_plane(first, second, third, max_concurrent_jobs=2)
    jobs, slots, fleet = parts(cp)
    assert [admit(cp, job) for job in (first, second, third)] == [
        Outcome.LAUNCHED,
        Outcome.LAUNCHED,
        Outcome.QUEUED,
    ]
    assert [jobs.items[j.job_id].status for j in (first, second, third)] == [
        JobStatus.PROVISIONING,
        JobStatus.PROVISIONING,
        JobStatus.QUEUED,
    ]
    assert slots.holders() == {first.job_id, second.job_id}
    assert sorted(i.job_id or "" for i in fleet.describe_ours()) == sorted([first.job_id, second.job_id])
    assert jobs.items[first.job_id].attempt == 1


def test_a_job_that_ended_frees_its_slot_for_the_oldest_queued_job() -> None:
    running = new_job(JobStatus.RUNNING, attempt=1)
    newer = new_job(JobStatus.QUEUED)
    older = new_job(JobStatus.QUEUED, created=clock.now() - timedelta(minutes=5))
    cp = fake_control_plane(running, newer, older, max_concurrent_jobs=1)
    jobs, slots, fleet = parts(cp)
    instance = fleet.start(running.job_id, 1)
    slots.acquire(running.job_id, 1)
    jobs.transition(running.job_id, [JobStatus.RUNNING], JobStatus.COMPLETED)

    job_ended(cp, running.job_id, running.owner, instance.instance_id)

    assert instance.instance_id in fleet.terminated
    assert slots.holders() == {older.job_id}
    assert jobs.items[older.job_id].status is JobStatus.PROVISIONING
    assert jobs.items[newer.job_id].status is JobStatus.QUEUED


def test_queued_jobs_are_offered_slots_oldest_first() -> None:
    jobs = [new_job(JobStatus.QUEUED, created=clock.now() - timedelta(minutes=m)) for m in (1, 3, 2)]
    assert in_line(jobs) == [jobs[1], jobs[2], jobs[0]]


def test_a_job_cancelled_during_its_launch_gets_no_instance_and_no_slot() -> None:
    job = new_job()
    cp = fake_control_plane(job)
    jobs, slots, fleet = parts(cp)
    real_run = fleet.launch

    def run_then_cancel(request):  # type: ignore[no-untyped-def]
        instance = real_run(request)
        jobs.transition(job.job_id, [JobStatus.PENDING], JobStatus.CANCELLED)
        return instance

    fleet.launch = run_then_cancel  # type: ignore[method-assign]
    assert admit(cp, job) is Outcome.ENDED
    assert fleet.describe_ours() == []
    assert slots.holders() == set()


def test_a_second_launcher_of_the_same_attempt_stands_aside() -> None:
    job = new_job()
    cp = fake_control_plane(job)
    other = fake_control_plane()
    object.__setattr__(other, "claims", cp.claims)  # the same table, another container
    assert cp.claims.claim(job.job_id, 1, other.holder, now_epoch=clock.epoch(clock.now()), lease_seconds=300)
    cp.slots.acquire(job.job_id, 2)
    assert launch(cp, job) is Outcome.IN_FLIGHT
    assert cp.fleet.runs == []


def test_a_permanent_ec2_error_fails_the_job_and_frees_its_slot() -> None:
    job = new_job()
    cp = fake_control_plane(job)
    cp.fleet.refuse.append("InvalidAMIID.NotFound")
    assert admit(cp, job) is Outcome.FAILED
    assert cp.jobs.items[job.job_id].status is JobStatus.FAILED
    assert "InvalidAMIID.NotFound" in (cp.jobs.items[job.job_id].error or "")
    assert cp.slots.holders() == set()


def test_no_capacity_puts_the_job_back_in_line_and_fails_it_at_the_limit() -> None:
    job = new_job()
    cp = fake_control_plane(job, max_capacity_failures=2)
    cp.fleet.refuse.extend(["InsufficientInstanceCapacity"] * 2)
    assert admit(cp, job) is Outcome.NO_CAPACITY
    assert cp.jobs.items[job.job_id].status is JobStatus.QUEUED
    assert cp.jobs.items[job.job_id].capacity_failures == 1
    assert cp.slots.holders() == set()
    assert [outcome for _, outcome in admit_queued(cp)] == [Outcome.FAILED]
    assert cp.jobs.items[job.job_id].status is JobStatus.FAILED
    assert cp.slots.holders() == set()


def _change(event: str, old: JobStatus | None, new: JobStatus | None) -> StreamChange:
    return StreamChange(
        event_name=event, job_id="job-1", old_status=old, new_status=new, instance_id=None, owner="alice"
    )


def test_the_change_rules_select_new_jobs_jobs_that_just_ended_and_lost_attempts() -> None:
    assert classify(_change("INSERT", None, JobStatus.PENDING)) is Change.NEW_JOB
    assert classify(_change("INSERT", None, JobStatus.RUNNING)) is None
    for old in ACTIVE:
        for new in JobStatus:
            expected = Change.JOB_ENDED if new in TERMINAL else None
            if (old, new) == (JobStatus.RUNNING, JobStatus.PROVISIONING):
                expected = Change.ATTEMPT_LOST
            assert classify(_change("MODIFY", old, new)) is expected
    for old in TERMINAL:
        assert classify(_change("MODIFY", old, JobStatus.COMPLETED)) is None  # a write to an ended job
    assert classify(_change("REMOVE", JobStatus.COMPLETED, None)) is None
    assert classify(_change("MODIFY", None, None)) is None  # the slot ledger, a launch claim
