"""Retries on in-memory fakes: a lost attempt goes back in line as attempt n + 1 up to the
limit, then the job fails with every attempt's reason; the lost instance's late writes and
racing launchers change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from control_plane.changes import Change, StreamChange, classify
from control_plane.context import ControlPlane
from control_plane.launch import Outcome
from control_plane.retry import Step, after_loss, next_step, record_loss, why_gone
from jobs import clock
from jobs.attempts import LossKind
from jobs.record import Job
from jobs.states import JobStatus, status_for_client
from tests.support.fakes import FakeFleet, FakeSlots, fake_control_plane, use_test_metrics
from tests.support.jobs import new_job


@pytest.fixture(autouse=True)
def _metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_metrics(monkeypatch)


def running(cp: ControlPlane, attempt: int = 1) -> Job:
    fleet: FakeFleet = cp.fleet  # type: ignore[assignment]
    instance = fleet.start("job-1", attempt)
    job = new_job(
        JobStatus.RUNNING,
        job_id="job-1",
        instance_id=instance.instance_id,
        attempt=attempt,
        created=clock.now() - timedelta(minutes=5),
        started_at="2026-01-01T00:00:00Z",
    )
    cp.jobs.put(job)  # type: ignore[attr-defined]
    cp.slots.acquire(job.job_id, 2)
    return job


def lose(cp: ControlPlane, job: Job, reason: str = "instance terminated") -> Outcome:
    assert record_loss(cp, job, LossKind.INSTANCE_LOST, reason).ok
    return after_loss(cp, job.job_id)


def current(cp: ControlPlane) -> Job:
    job = cp.jobs.get("job-1")
    assert job is not None
    return job


def test_the_next_step_follows_the_attempts_used() -> None:
    assert next_step(new_job(attempt=1), 3) is Step.RELAUNCH
    assert next_step(new_job(attempt=2), 3) is Step.RELAUNCH
    assert next_step(new_job(attempt=3), 3) is Step.GIVE_UP
    assert next_step(new_job(attempt=1), 1) is Step.GIVE_UP


def test_a_lost_attempt_goes_back_in_line_on_a_new_instance() -> None:
    cp = fake_control_plane()
    job = running(cp)
    assert lose(cp, job) is Outcome.LAUNCHED
    now = current(cp)
    assert now.status is JobStatus.PROVISIONING and now.attempt == 2
    assert now.instance_id not in (None, job.instance_id)
    assert [(lost.attempt, lost.reason, lost.instance_id) for lost in now.lost_attempts] == [
        (1, "instance terminated", job.instance_id)
    ]
    fleet: FakeFleet = cp.fleet  # type: ignore[assignment]
    assert fleet.terminated == [job.instance_id]
    assert cp.slots.holders() == {"job-1"}
    # A 1.0 client that saw it running keeps seeing it running; 1.1 sees the truth.
    assert status_for_client(now.status, "1.0", None, retrying=now.retrying) == ("running", None)
    assert status_for_client(now.status, "1.1", None, retrying=now.retrying) == ("provisioning", None)


def test_the_third_loss_of_three_fails_the_job_listing_each_attempt() -> None:
    cp = fake_control_plane(max_launch_attempts=3)
    job = running(cp)
    reasons = ["instance terminated", "heartbeat lost", "Spot interruption notice"]
    outcomes = []
    for reason in reasons:
        outcomes.append(lose(cp, job, reason))
        relaunched = current(cp) if outcomes[-1] is Outcome.LAUNCHED else None
        if relaunched is not None:  # its worker starts
            assert cp.jobs.transition("job-1", [JobStatus.PROVISIONING], JobStatus.RUNNING).ok
            job = current(cp)
    assert outcomes == [Outcome.LAUNCHED, Outcome.LAUNCHED, Outcome.FAILED]
    final = cp.jobs.get("job-1", include_expired=True)
    assert final is not None and final.status is JobStatus.FAILED
    assert final.error is not None
    for attempt, reason in enumerate(reasons, start=1):
        assert f"attempt {attempt}: {reason}" in final.error
    assert cp.slots.holders() == set()
    fleet: FakeFleet = cp.fleet  # type: ignore[assignment]
    assert fleet.instances == {}


def test_a_loss_seen_on_a_stale_view_is_refused() -> None:
    cp = fake_control_plane()
    job = running(cp)
    assert cp.jobs.update_active("job-1", {"heartbeat_at": "2026-01-01T00:01:00Z"}).ok  # the worker beat
    assert not record_loss(
        cp, job, LossKind.HEARTBEAT_LOST, "no heartbeat", only_if={"updated_at": job.updated_at}
    ).ok
    assert current(cp).status is JobStatus.RUNNING and current(cp).lost_attempts == []


def test_the_lost_instance_late_writes_are_refused() -> None:
    cp = fake_control_plane()
    job = running(cp)
    old = {"instance_id": job.instance_id, "attempt": 1}
    assert lose(cp, job) is Outcome.LAUNCHED
    relaunched = current(cp)
    # Its heartbeat and progress, its outcome, a second hand-back: all conditional on attempt 1.
    assert not cp.jobs.update_active("job-1", {"heartbeat_at": "late"}, only_if=old).ok
    assert not cp.jobs.transition(
        "job-1", [JobStatus.RUNNING, JobStatus.PROVISIONING], JobStatus.FAILED, only_if=old
    ).ok
    assert not record_loss(cp, job, LossKind.INTERRUPTED, "late notice").ok
    assert current(cp) == relaunched


def test_launcher_and_reaper_racing_after_one_loss_start_one_instance() -> None:
    cp = fake_control_plane()
    job = running(cp)
    assert record_loss(cp, job, LossKind.INSTANCE_LOST, "instance terminated").ok
    first, second = after_loss(cp, "job-1"), after_loss(cp, "job-1")
    assert (first, second) == (Outcome.LAUNCHED, Outcome.MOVED_ON)
    fleet: FakeFleet = cp.fleet  # type: ignore[assignment]
    assert [run.attempt for run in fleet.runs] == [2]
    assert len(fleet.instances) == 1


def test_a_loss_recorded_twice_counts_once() -> None:
    cp = fake_control_plane()
    job = running(cp)
    assert record_loss(cp, job, LossKind.INTERRUPTED, "Spot interruption notice").ok  # the worker
    assert not record_loss(cp, job, LossKind.HEARTBEAT_LOST, "no heartbeat").ok  # the reaper, late
    assert len(current(cp).lost_attempts) == 1


def test_only_a_running_attempt_lost_is_a_change_for_the_launcher() -> None:
    def change(old: JobStatus, new: JobStatus) -> Change | None:
        return classify(StreamChange("MODIFY", "job-1", old, new, None, "alice"))

    assert change(JobStatus.RUNNING, JobStatus.PROVISIONING) is Change.ATTEMPT_LOST
    assert change(JobStatus.PROVISIONING, JobStatus.PROVISIONING) is None  # a launch recorded
    assert change(JobStatus.PROVISIONING, JobStatus.RUNNING) is None


def test_slots_stay_with_a_job_between_attempts() -> None:
    cp = fake_control_plane()
    job = running(cp)
    slots: FakeSlots = cp.slots  # type: ignore[assignment]
    slots.release("job-1")  # a ledger that lost track
    assert record_loss(cp, job, LossKind.INSTANCE_LOST, "gone").ok
    assert after_loss(cp, "job-1") is Outcome.LAUNCHED
    assert slots.holders() == {"job-1"}


def test_the_state_reason_tells_a_spot_interruption_from_a_loss() -> None:
    assert why_gone(LossKind.INSTANCE_LOST, "instance i-1 is no longer running", None) == (
        LossKind.INSTANCE_LOST,
        "instance i-1 is no longer running",
    )
    kind, reason = why_gone(
        LossKind.INSTANCE_LOST,
        "instance i-1 is no longer running",
        "Server.SpotInstanceTermination: Spot instance termination",
    )
    assert kind is LossKind.INTERRUPTED and "Spot interruption" in reason
    kind, reason = why_gone(LossKind.INSTANCE_LOST, "gone", "Server.InternalError: Internal error on launch")
    assert kind is LossKind.INSTANCE_LOST and "Server.InternalError" in reason
