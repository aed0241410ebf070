"""Admission between owners, on fakes: a per-owner running limit kept by the slot ledger,
and queued jobs offered free slots oldest first across owners (round robin by age)."""

from __future__ import annotations

from datetime import timedelta

from control_plane.admission import admit, admit_queued, in_line
from control_plane.ended import job_ended
from control_plane.launch import Outcome
from jobs import clock
from jobs.record import Job
from jobs.states import JobStatus
from tests.support.fakes import FakeJobs, FakeSlots, fake_control_plane
from tests.support.jobs import new_job


def queued(owner: str, minutes_ago: float) -> Job:
    return new_job(JobStatus.QUEUED, owner=owner, created=clock.now() - timedelta(minutes=minutes_ago))


def test_queued_jobs_are_in_line_round_robin_by_age_across_owners() -> None:
    a = [queued("a", 60 - m) for m in range(5)]  # the oldest five
    b = [queued("b", 30)]
    c = [queued("c", 20), queued("c", 10)]
    line = in_line([*c, *b, *reversed(a)])
    assert [(job.owner, a.index(job) if job in a else c.index(job) if job in c else 0) for job in line] == [
        ("a", 0),
        ("b", 0),
        ("c", 0),
        ("a", 1),
        ("c", 1),
        ("a", 2),
        ("a", 3),
        ("a", 4),
    ]


def test_an_owners_backlog_does_not_take_every_freed_slot() -> None:
    backlog = [queued("a", 60 - m) for m in range(5)]
    newer = queued("b", 1)
    cp = fake_control_plane(*backlog, newer, max_concurrent_jobs=2, max_running_jobs_per_owner=5)
    launched = [job.job_id for job, outcome in admit_queued(cp) if outcome is Outcome.LAUNCHED]
    assert launched == [backlog[0].job_id, newer.job_id]
    jobs: FakeJobs = cp.jobs  # type: ignore[assignment]
    assert jobs.items[backlog[1].job_id].status is JobStatus.QUEUED


def test_an_owner_at_its_running_limit_waits_queued_while_others_get_slots() -> None:
    mine = [new_job(owner="a", created=clock.now() - timedelta(minutes=10 - m)) for m in range(4)]
    theirs = new_job(owner="b")
    cp = fake_control_plane(*mine, theirs, max_concurrent_jobs=4, max_running_jobs_per_owner=2)
    assert [admit(cp, job) for job in (*mine, theirs)] == [
        Outcome.LAUNCHED,
        Outcome.LAUNCHED,
        Outcome.QUEUED,
        Outcome.QUEUED,
        Outcome.LAUNCHED,
    ]
    slots: FakeSlots = cp.slots  # type: ignore[assignment]
    assert slots.holders() == {mine[0].job_id, mine[1].job_id, theirs.job_id}  # a slot stays free
    assert slots.by_owner == {"a": {mine[0].job_id, mine[1].job_id}, "b": {theirs.job_id}}

    # The free slot is not A's while A is at its limit; B's next job takes it.
    later = new_job(JobStatus.QUEUED, owner="b")
    cp.jobs.put(later)  # type: ignore[attr-defined]
    assert [(job.job_id, outcome) for job, outcome in admit_queued(cp)] == [(later.job_id, Outcome.LAUNCHED)]

    # One of A's jobs ends: its slot and its place under the limit go to A's oldest queued job.
    cp.jobs.transition(mine[0].job_id, [JobStatus.PROVISIONING], JobStatus.FAILED)
    job_ended(cp, mine[0].job_id, "a", None)
    jobs: FakeJobs = cp.jobs  # type: ignore[assignment]
    assert jobs.items[mine[2].job_id].status is JobStatus.PROVISIONING
    assert jobs.items[mine[3].job_id].status is JobStatus.QUEUED
    assert slots.by_owner["a"] == {mine[1].job_id, mine[2].job_id}


def test_a_full_ledger_stops_admission_whoever_is_next() -> None:
    cp = fake_control_plane(queued("a", 2), queued("b", 1), max_concurrent_jobs=1)
    outcomes = admit_queued(cp)
    assert [outcome for _, outcome in outcomes] == [Outcome.LAUNCHED]
    assert len(cp.slots.holders()) == 1
