"""The reaper's plan on plain data: a snapshot in, actions out; no AWS, no clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jobs import clock
from jobs.attempts import LossKind
from jobs.instances import Instance
from jobs.record import Job
from jobs.states import JobStatus
from services.reaper.plan import (
    Admit,
    DeleteExpired,
    Dequeue,
    EndJob,
    LoseAttempt,
    ReconcileSlots,
    Relaunch,
    Snapshot,
    TerminateOrphans,
    plan,
)
from services.reaper.settings import Settings
from tests.support.fakes import SETTINGS
from tests.support.jobs import new_job

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=clock.UTC)
SET = Settings(**SETTINGS)


def at(**ago: float) -> str:
    return clock.iso(NOW - timedelta(**ago))


def job(status: JobStatus, **fields: Any) -> Job:
    fields.setdefault("expires_at", clock.epoch(NOW) + 86400)
    return new_job(status, created=NOW - timedelta(hours=1), **fields)


def instance(job_id: str | None, instance_id: str, *, age: timedelta = timedelta(hours=1)) -> Instance:
    return Instance(instance_id, "running", "t3.medium", NOW - age, job_id, 1)


def snapshot(*jobs: Job, instances: tuple[Instance, ...] = (), holders: set[str] | None = None) -> Snapshot:
    active: dict[JobStatus, list[Job]] = {}
    for each in jobs:
        active.setdefault(each.status, []).append(each)
    held = {j.job_id for j in jobs if j.status not in (JobStatus.PENDING, JobStatus.QUEUED)}
    return Snapshot(active=active, instances=list(instances), holders=held if holders is None else holders)


def running(**fields: Any) -> Job:
    fields = {
        "attempt": 1,
        "instance_id": "i-1",
        "started_at": at(minutes=30),
        "heartbeat_at": at(seconds=10),
        **fields,
    }
    return job(JobStatus.RUNNING, **fields)


def test_a_healthy_pass_plans_nothing() -> None:
    healthy = running()
    assert plan(snapshot(healthy, instances=(instance(healthy.job_id, "i-1"),)), NOW, SET) == []


def test_a_stale_heartbeat_loses_the_attempt_only_if_nothing_was_written_since() -> None:
    stale = running(heartbeat_at=at(minutes=7), updated_at=at(minutes=7))
    [lose] = plan(snapshot(stale, instances=(instance(stale.job_id, "i-1"),)), NOW, SET)
    assert isinstance(lose, LoseAttempt)
    assert (lose.kind, lose.only_if, lose.ask_state_reason) == (
        LossKind.HEARTBEAT_LOST,
        {"updated_at": stale.updated_at},
        False,
    )
    assert "heartbeat lost" in lose.reason


def test_a_running_job_whose_instance_is_gone_loses_its_attempt_without_waiting_for_the_timeout() -> None:
    gone = running(heartbeat_at=at(seconds=70), updated_at=at(seconds=70))
    beating = running(heartbeat_at=at(seconds=20), updated_at=at(seconds=20))  # a moment of EC2 lag
    [lose] = plan(snapshot(gone, beating), NOW, SET)
    assert isinstance(lose, LoseAttempt) and lose.job == gone
    assert (lose.kind, lose.ask_state_reason) == (LossKind.INSTANCE_LOST, True)
    assert "i-1 is no longer running" in lose.reason


def test_a_job_past_its_deadline_and_grace_times_out() -> None:
    late = running(started_at=at(hours=2), options={"job_timeout_seconds": 3600})
    within = running(started_at=at(seconds=3600 + 300), options={"job_timeout_seconds": 3600})
    actions = plan(snapshot(late, within), NOW, SET)
    assert [(type(a), a.job.job_id) for a in actions if isinstance(a, EndJob)] == [(EndJob, late.job_id)]
    assert actions[0].to_status is JobStatus.TIMEOUT  # type: ignore[union-attr]


def test_the_operator_maximum_run_time_caps_every_job_deadline() -> None:
    capped = Settings(**{**SETTINGS, "max_job_runtime_seconds": 1800})
    longest = running(started_at=at(minutes=45), options={"job_timeout_seconds": 0})
    longer = running(started_at=at(minutes=45), options={"job_timeout_seconds": 7200})
    shorter = running(started_at=at(minutes=25), options={"job_timeout_seconds": 600})
    within = running(started_at=at(minutes=35), options={"job_timeout_seconds": 7200})
    actions = plan(snapshot(longest, longer, shorter, within), NOW, capped)
    ended = {a.job.job_id: a for a in actions if isinstance(a, EndJob)}
    assert set(ended) == {longest.job_id, longer.job_id, shorter.job_id}
    assert ended[longer.job_id].error == "Job exceeded its time limit of 1800 s"
    assert ended[shorter.job_id].error == "Job exceeded its time limit of 600 s"


def test_cancelling_past_its_grace_is_cancelled() -> None:
    cancelling = job(JobStatus.CANCELLING, attempt=1, instance_id="i-1", cancel_requested_at=at(minutes=6))
    [end] = plan(snapshot(cancelling), NOW, SET)
    assert isinstance(end, EndJob) and end.to_status is JobStatus.CANCELLED


def test_a_stuck_launch_loses_its_attempt() -> None:
    stuck = job(JobStatus.PROVISIONING, attempt=1, instance_id="i-1", launched_at=at(minutes=20))
    gone = job(JobStatus.PROVISIONING, attempt=1, instance_id="i-gone", launched_at=at(minutes=20))
    fresh = job(JobStatus.PROVISIONING, attempt=1, instance_id="i-3", launched_at=at(minutes=5))
    seen = snapshot(
        stuck, gone, fresh, instances=tuple(instance(j.job_id, str(j.instance_id)) for j in (stuck, fresh))
    )
    actions = plan(seen, NOW, SET)
    assert [(type(a), a.job, a.kind) for a in actions] == [  # type: ignore[union-attr]
        (LoseAttempt, stuck, LossKind.NEVER_STARTED),
        (LoseAttempt, gone, LossKind.INSTANCE_LOST),
    ]  # the fresh launch is left alone; settled jobs are not reconciled
    assert "did not start within 900 s" in actions[0].reason  # type: ignore[union-attr]


def test_a_next_attempt_not_started_is_started_after_the_launcher_had_its_chance() -> None:
    lost = [{"attempt": 1, "kind": "interrupted", "reason": "Spot", "at": at(minutes=9)}]
    waiting = job(JobStatus.PROVISIONING, attempt=1, lost_attempts=lost, updated_at=at(minutes=4))
    just_lost = job(JobStatus.PROVISIONING, attempt=1, lost_attempts=lost, updated_at=at(seconds=10))
    actions = plan(snapshot(waiting, just_lost), NOW, SET)
    assert [(type(a), a.job) for a in actions] == [(Relaunch, waiting)]  # type: ignore[union-attr]


def test_waiting_jobs_are_admitted_after_their_grace_and_queued_ones_offered_slots_in_order() -> None:
    lost = job(JobStatus.PENDING, created_at=at(minutes=4))
    fresh = job(JobStatus.PENDING, created_at=at(seconds=30))
    older, newer = (
        job(JobStatus.QUEUED, created_at=at(minutes=9)),
        job(JobStatus.QUEUED, created_at=at(minutes=2)),
    )
    assert plan(snapshot(lost, fresh, older, newer), NOW, SET) == [Admit(lost), Dequeue((older, newer))]


def test_an_expired_job_is_deleted_and_its_instance_left_to_that() -> None:
    expired = running(expires_at=clock.epoch(NOW) - 1)
    assert plan(snapshot(expired, instances=(instance(expired.job_id, "i-1"),)), NOW, SET) == [
        DeleteExpired(expired)
    ]


def test_the_ledger_is_checked_against_what_each_job_may_hold() -> None:
    waiting = job(JobStatus.PENDING, created_at=at(seconds=20), updated_at=at(seconds=20))
    forgotten = job(JobStatus.QUEUED, updated_at=at(hours=1))
    unrecorded = running(instance_id="i-9")
    seen = snapshot(
        waiting,
        forgotten,
        unrecorded,
        instances=(instance(unrecorded.job_id, "i-9"),),
        holders={waiting.job_id, forgotten.job_id, "vanished-job"},
    )
    [dequeue, reconcile] = plan(seen, NOW, SET)
    assert dequeue == Dequeue((forgotten,))
    # Holders the snapshot does not explain are read again when applied: a launch may move them on.
    assert reconcile == ReconcileSlots(
        release_if_unused=tuple(sorted([forgotten.job_id, "vanished-job"])),
        restore_if_held=(unrecorded.job_id,),
    )


def test_instances_without_a_job_that_wants_them_are_orphans() -> None:
    keeper = running(instance_id="i-keep")
    pending = job(JobStatus.PENDING, created_at=at(seconds=30))
    untagged = instance(None, "i-untagged")
    stray = instance(keeper.job_id, "i-stray")
    young = instance(pending.job_id, "i-young", age=timedelta(minutes=1))
    unknown = instance("ended-job", "i-unknown")
    seen = snapshot(
        keeper, pending, instances=(instance(keeper.job_id, "i-keep"), untagged, stray, young, unknown)
    )
    [orphans] = plan(seen, NOW, SET)
    assert orphans == TerminateOrphans(
        orphans=((untagged, "instance has no JobId tag"), (stray, "job points at i-keep")), check=(unknown,)
    )
