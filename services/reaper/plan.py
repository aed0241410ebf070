"""The reaper's decisions as a pure function: `plan(snapshot, now, settings)` reads what
one pass saw and returns the actions to take, in order. No reads, no writes, no clock:
tests give it plain data.

Every action is applied guarded (`services.reaper.logic`): a terminal write names the
status and launch it saw (and, for a stale heartbeat, the last write), and an action
that depends on a job the snapshot does not explain reads that job first and applies the
same rule to what it finds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from control_plane.holdings import WAITING, Holdings
from control_plane.retry import awaiting_next_attempt
from jobs import clock
from jobs.attempts import LossKind
from jobs.instances import Instance
from jobs.record import Job
from jobs.states import JobStatus
from services.reaper.settings import Settings

# The order the pass reads and handles statuses in.
STATUS_ORDER = (
    JobStatus.RUNNING,
    JobStatus.CANCELLING,
    JobStatus.PROVISIONING,
    JobStatus.PENDING,
    JobStatus.QUEUED,
)


class Metric(StrEnum):
    ACTIVE = "ActiveJobs"
    QUEUED = "QueuedJobs"
    STALE = "StaleJobsReaped"
    TIMEOUTS = "JobsTimedOut"
    CANCELS = "CancelsCompleted"
    RELAUNCHES = "Relaunches"
    START_FAILURES = "WorkerStartFailures"
    ORPHANS = "OrphansTerminated"
    EXPIRED = "ExpiredDeleted"
    RUNNING_INSTANCES = "RunningInstances"
    SLOTS_RECONCILED = "SlotsReconciled"
    ERRORS = "ReaperErrors"


@dataclass(frozen=True)
class Snapshot:
    """What one pass read: the unfinished jobs by status (oldest first), the live instances
    of this deployment, and the slot ledger's holders."""

    active: dict[JobStatus, list[Job]]
    instances: list[Instance]
    holders: set[str]

    def jobs(self) -> dict[str, Job]:
        return {job.job_id: job for status in STATUS_ORDER for job in self.active.get(status, [])}


@dataclass(frozen=True)
class EndJob:
    """A terminal write by the reaper; if it takes effect, the job is settled."""

    job: Job
    to_status: JobStatus
    error: str
    only_if: dict[str, Any]
    action: str
    reason: str
    metric: Metric


@dataclass(frozen=True)
class LoseAttempt:
    """The job's attempt was lost to the infrastructure: record it, conditional on the job
    as seen, then start the next attempt or fail the job (`control_plane.retry`)."""

    job: Job
    kind: LossKind
    reason: str
    only_if: dict[str, Any]
    metric: Metric
    # The instance is gone: its EC2 state reason tells an interruption (Spot) from a loss.
    ask_state_reason: bool = False


@dataclass(frozen=True)
class Relaunch:
    """A loss is recorded and its next attempt has not started (the launcher that should
    have started it failed, or found no capacity): start it, or fail the job."""

    job: Job
    why: str


@dataclass(frozen=True)
class Admit:
    job: Job


@dataclass(frozen=True)
class Dequeue:
    jobs: tuple[Job, ...]


@dataclass(frozen=True)
class DeleteExpired:
    job: Job


@dataclass(frozen=True)
class ReconcileSlots:
    """Holders that may not be using their slot, and jobs with an instance but no slot:
    each is read again and kept, released or restored by `slot_unused` / `Holdings`."""

    release_if_unused: tuple[str, ...]
    restore_if_held: tuple[str, ...]


@dataclass(frozen=True)
class TerminateOrphans:
    orphans: tuple[tuple[Instance, str], ...]  # (instance, reason)
    check: tuple[Instance, ...] = field(default=())  # their job is read first


Action = EndJob | LoseAttempt | Relaunch | Admit | Dequeue | DeleteExpired | ReconcileSlots | TerminateOrphans


def plan(snapshot: Snapshot, now: datetime, settings: Settings) -> list[Action]:
    now_epoch = clock.epoch(now)
    live = {instance.instance_id for instance in snapshot.instances}
    actions: list[Action] = []
    queued: list[Job] = []
    for status in STATUS_ORDER:
        for job in snapshot.active.get(status, []):
            if job.is_expired(now_epoch):
                actions.append(DeleteExpired(job))
            elif status is JobStatus.QUEUED:
                queued.append(job)
            else:
                actions.extend(_job_actions(job, now, settings, live))
    if queued:  # the safety net for a lost slot release: queued jobs get any free slot
        actions.append(Dequeue(tuple(queued)))
    # Jobs whose slot and instance an action above settles itself.
    settled = {
        a.job.job_id for a in actions if isinstance(a, EndJob | LoseAttempt | DeleteExpired | Relaunch)
    }
    reconcile = _reconcile(snapshot, settled, now, settings)
    if reconcile.release_if_unused or reconcile.restore_if_held:
        actions.append(reconcile)
    orphans = _orphans(snapshot, settled, now, settings)
    if orphans.orphans or orphans.check:
        actions.append(orphans)
    return actions


# -- the rules --------------------------------------------------------------------------


def older_than(now: datetime, timestamp: str | None, seconds: int) -> bool:
    return timestamp is None or now - clock.parse_iso(timestamp) > timedelta(seconds=seconds)


def deadline(job: Job, settings: Settings) -> datetime:
    started = job.started_at or job.launched_at or job.created_at
    return clock.parse_iso(started) + timedelta(
        seconds=job.options.runtime_limit(settings.max_job_runtime_seconds) + settings.deadline_grace_seconds
    )


def slot_unused(job: Job | None, now: datetime, settings: Settings) -> bool:
    """Whether a slot holder is not using its slot: it may hold none (`Holdings`), and if it
    is waiting, nobody has been launching it for `slot_hold_grace_seconds`."""
    if Holdings.of(job, clock.epoch(now)).slot:
        return False
    if job is not None and job.status in WAITING and not job.is_expired(clock.epoch(now)):
        return older_than(now, job.updated_at, settings.slot_hold_grace_seconds)
    return True


def orphan_reason(instance: Instance, job: Job | None, now: datetime, settings: Settings) -> str | None:
    """Why an instance of ours should not be running, or None."""
    if not instance.job_id:
        return "instance has no JobId tag"
    if job is None:
        return "job is missing"
    if job.is_expired(clock.epoch(now)):
        return "job has expired"
    if job.status.is_terminal:
        return f"job is {job.status.value}"
    if job.instance_id != instance.instance_id:
        young = instance.launch_time is not None and now - instance.launch_time < timedelta(
            seconds=settings.orphan_grace_seconds
        )
        if not young:  # a young one may belong to a launch not yet recorded
            return f"job points at {job.instance_id or 'no instance'}"
    return None


def _same_launch(job: Job) -> dict[str, Any]:
    condition: dict[str, Any] = {"attempt": job.attempt}
    if job.instance_id:
        condition["instance_id"] = job.instance_id
    return condition


def _job_actions(job: Job, now: datetime, settings: Settings, live: set[str]) -> Iterable[Action]:
    if job.status is JobStatus.RUNNING:
        due = deadline(job, settings)
        if now > due:
            limit = job.options.runtime_limit(settings.max_job_runtime_seconds)
            yield EndJob(
                job,
                JobStatus.TIMEOUT,
                f"Job exceeded its time limit of {limit} s",
                _same_launch(job),
                "timed_out",
                f"deadline {clock.iso(due)} passed",
                Metric.TIMEOUTS,
            )
            return
        last_write = job.heartbeat_at or job.started_at or job.launched_at
        # Conditional on the last write seen: a heartbeat that lands now keeps the job alive.
        seen = {"updated_at": job.updated_at}
        if job.instance_id not in live and older_than(
            now, last_write, 2 * settings.heartbeat_interval_seconds
        ):
            reason = f"instance {job.instance_id or '(none)'} is no longer running"
            yield LoseAttempt(job, LossKind.INSTANCE_LOST, reason, seen, Metric.STALE, ask_state_reason=True)
        elif older_than(now, last_write, settings.heartbeat_timeout_seconds):
            reason = (
                f"worker heartbeat lost: last at {last_write or 'never'}, none for more than "
                f"{settings.heartbeat_timeout_seconds} s"
            )
            yield LoseAttempt(job, LossKind.HEARTBEAT_LOST, reason, seen, Metric.STALE)
    elif job.status is JobStatus.CANCELLING:
        requested = job.cancel_requested_at or job.updated_at
        if older_than(now, requested, settings.cancel_grace_seconds):
            yield EndJob(
                job,
                JobStatus.CANCELLED,
                "Job was cancelled; the worker did not stop in time",
                _same_launch(job),
                "cancelled",
                f"cancel requested {requested}",
                Metric.CANCELS,
            )
    elif job.status is JobStatus.PROVISIONING:
        if awaiting_next_attempt(job):
            # The launcher starts it on the loss's stream record; this is the safety net. A
            # launch that found no EC2 capacity is tried again at every pass.
            if job.capacity_failures or older_than(now, job.updated_at, settings.pending_grace_seconds):
                yield Relaunch(job, f"attempt {job.attempt + 1} not started since {job.updated_at}")
            return
        if not older_than(now, job.launched_at, settings.provisioning_grace_seconds):
            return
        seen = {"updated_at": job.updated_at}
        if job.instance_id in live:
            reason = f"the worker did not start within {settings.provisioning_grace_seconds} s of launch"
            yield LoseAttempt(job, LossKind.NEVER_STARTED, reason, seen, Metric.START_FAILURES)
        else:
            reason = f"instance {job.instance_id or '(none)'} was gone before its worker started"
            yield LoseAttempt(
                job, LossKind.INSTANCE_LOST, reason, seen, Metric.START_FAILURES, ask_state_reason=True
            )
    elif job.status is JobStatus.PENDING and older_than(now, job.created_at, settings.pending_grace_seconds):
        yield Admit(job)


def _reconcile(snapshot: Snapshot, settled: set[str], now: datetime, settings: Settings) -> ReconcileSlots:
    jobs = snapshot.jobs()
    release = []
    for job_id in sorted(snapshot.holders - settled):
        seen = jobs.get(job_id)
        if seen is not None and not slot_unused(seen, now, settings):
            continue  # it has an instance, or a launcher may be launching it right now
        release.append(job_id)  # read again before: the pass may have moved it on
    restore = [
        job.job_id
        for job in jobs.values()
        if job.job_id not in snapshot.holders
        and job.job_id not in settled
        and Holdings.of(job, clock.epoch(now)).slot
    ]
    return ReconcileSlots(tuple(release), tuple(restore))


def _orphans(snapshot: Snapshot, settled: set[str], now: datetime, settings: Settings) -> TerminateOrphans:
    jobs = snapshot.jobs()
    orphans: list[tuple[Instance, str]] = []
    check: list[Instance] = []
    for instance in snapshot.instances:
        job = jobs.get(instance.job_id or "")
        if instance.job_id and job is None:
            check.append(instance)  # an ended or missing job: read it
            continue
        if job is not None and job.job_id in settled and job.instance_id == instance.instance_id:
            continue  # the action that settles the job ends its instance
        reason = orphan_reason(instance, job, now, settings)
        if reason:
            orphans.append((instance, reason))
    return TerminateOrphans(tuple(orphans), tuple(check))
