"""Retries: an attempt lost to the infrastructure goes back in line; an engine error does not.

An attempt is lost when its instance is gone (terminated, stopped, failed checks), its
worker stopped heart-beating or never started, or EC2 interrupts it (Spot). Whoever sees it
first records the loss with one conditional write (`record_loss` here for the reaper, the
worker's hand-back report applied by `control_plane.reports`): the job goes to
`provisioning` without an instance, and the attempt's reason joins `lost_attempts`. The
write is conditional on the attempt and instance it saw, so one loss is recorded once, and
the lost instance's late reports (heartbeat, progress, outcome) are refused: they are
applied only while the job is on that instance and attempt.

`after_loss` follows it, from the launcher (on the stream record of that write) or from
the reaper (after its own write, and for a job whose next attempt never started): it ends
the lost instance and starts the next attempt, or fails the job when `max_launch_attempts`
attempts are used up, with every attempt's reason. Launch claims make sure that however
many of them run, one instance starts per attempt.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from control_plane.admission import launch_and_pass_on
from control_plane.context import ControlPlane
from control_plane.holdings import Holdings
from control_plane.launch import Outcome
from control_plane.settle import settle
from control_plane.telemetry import logger
from jobs import clock
from jobs.attempts import LossKind, LostAttempt, attempts_error, loss_fields
from jobs.record import Job
from jobs.states import JobStatus
from jobs.store import WriteResult

# EC2's state reason code of an instance it terminated to take the Spot capacity back.
SPOT_TERMINATION = "Server.SpotInstanceTermination"


class Step(StrEnum):
    RELAUNCH = "relaunch"  # start attempt n + 1
    GIVE_UP = "give_up"  # the attempts are used up: the job fails


def next_step(job: Job, max_attempts: int) -> Step:
    """After attempt `job.attempt` was lost."""
    return Step.RELAUNCH if job.attempt < max_attempts else Step.GIVE_UP


def awaiting_next_attempt(job: Job) -> bool:
    """A loss was recorded and the next attempt has not been launched yet."""
    return job.status is JobStatus.PROVISIONING and job.instance_id is None and bool(job.lost_attempts)


def why_gone(kind: LossKind, reason: str, state_reason: str | None) -> tuple[LossKind, str]:
    """A gone instance's EC2 state reason ("Code: message") tells an interruption from a loss."""
    if state_reason and state_reason.startswith(SPOT_TERMINATION):
        return LossKind.INTERRUPTED, f"{reason}: Spot interruption ({state_reason})"
    if state_reason:
        return kind, f"{reason} ({state_reason})"
    return kind, reason


def lost_attempt(job: Job, kind: LossKind, reason: str) -> LostAttempt:
    return LostAttempt(
        attempt=job.attempt, kind=kind, reason=reason, at=clock.now_iso(), instance_id=job.instance_id
    )


def record_loss(
    cp: ControlPlane, job: Job, kind: LossKind, reason: str, *, only_if: dict[str, Any] | None = None
) -> WriteResult:
    """The loss of the attempt `job` is on, conditional on the job as seen (its status,
    attempt and instance, plus `only_if`)."""
    guard: dict[str, Any] = {"attempt": job.attempt, **(only_if or {})}
    if job.instance_id:
        guard["instance_id"] = job.instance_id
    result = cp.jobs.transition(
        job.job_id,
        [job.status],
        JobStatus.PROVISIONING,
        set_fields=loss_fields(job.lost_attempts, lost_attempt(job, kind, reason)),
        remove_fields=["instance_id"],
        only_if=guard,
    )
    if result.ok:
        logger.warning(
            "attempt lost to the infrastructure",
            extra={"job_id": job.job_id, "attempt": job.attempt, "kind": kind.value, "reason": reason},
        )
    return result


def after_loss(cp: ControlPlane, job_id: str) -> Outcome:
    """End the lost attempt's instance, then launch the next attempt or fail the job."""
    job = cp.jobs.get(job_id)
    if job is None or not awaiting_next_attempt(job):
        return Outcome.MOVED_ON
    lost = job.lost_attempts[-1]
    if lost.instance_id:
        cp.fleet.terminate([lost.instance_id])
    if next_step(job, cp.settings.max_launch_attempts) is Step.GIVE_UP:
        result = cp.jobs.transition(
            job.job_id,
            [JobStatus.PROVISIONING],
            JobStatus.FAILED,
            set_fields={"error": attempts_error(job.lost_attempts, job.attempt)},
            only_if={"attempt": job.attempt, "updated_at": job.updated_at},
        )
        settle(
            cp,
            job.job_id,
            job.owner,
            result.job if result.ok else cp.jobs.get(job.job_id, include_expired=True),
        )
        if result.ok:
            logger.error("attempts used up: job failed", extra={"job_id": job.job_id, "attempt": job.attempt})
            return Outcome.FAILED
        return Outcome.MOVED_ON
    if Holdings.of(job, clock.epoch(clock.now())).slot:
        # The job keeps its slot through the loss; a reconcile that ran meanwhile may have
        # taken it from the ledger.
        cp.slots.restore([job])
    outcome = launch_and_pass_on(cp, job)
    logger.info(
        "next attempt after a lost one",
        extra={"job_id": job.job_id, "attempt": job.attempt + 1, "outcome": outcome.value},
    )
    return outcome
