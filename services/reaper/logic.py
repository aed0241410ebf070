"""The reaper's pass: every unfinished job and every instance of ours, checked once.

Its reads are the sparse active-jobs index (one query per active status) and the
instances tagged as ours, plus a consistent read for the few jobs or slot holders those
do not explain: its cost follows the active jobs and instances, never the table's history.

Expired items: an unfinished job past its TTL shows up in the active index and is deleted
here (after its instance and slot are let go). A finished job past its TTL is left to
DynamoDB's TTL deletion: every read already treats an expired item as gone, and finding
them without a Scan would need an index of all finished jobs, which is the history.

Every write is conditional on what this pass read (status, launch attempt, instance,
and for a stale heartbeat the last write time), so a worker that just wrote wins, and
two reapers running at once reach the same single outcome.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from control_plane.admission import admit, admit_queued
from control_plane.context import ControlPlane
from control_plane.launch import launch
from control_plane.settle import settle
from control_plane.telemetry import logger, metrics
from jobs import clock
from jobs.instances import Instance
from jobs.record import Job
from jobs.states import JobStatus
from jobs.store import WriteResult
from services.reaper.settings import Settings

SLOT_USERS = (JobStatus.PROVISIONING, JobStatus.RUNNING, JobStatus.CANCELLING)
# The order the pass reads and handles statuses in.
STATUS_ORDER = (
    JobStatus.RUNNING,
    JobStatus.CANCELLING,
    JobStatus.PROVISIONING,
    JobStatus.PENDING,
    JobStatus.QUEUED,
)

METRIC_ACTIVE = "ActiveJobs"
METRIC_QUEUED = "QueuedJobs"
METRIC_STALE = "StaleJobsReaped"
METRIC_TIMEOUTS = "JobsTimedOut"
METRIC_CANCELS = "CancelsCompleted"
METRIC_RELAUNCHES = "Relaunches"
METRIC_START_FAILURES = "WorkerStartFailures"
METRIC_ORPHANS = "OrphansTerminated"
METRIC_EXPIRED = "ExpiredDeleted"
METRIC_RUNNING_INSTANCES = "RunningInstances"
METRIC_SLOTS_RECONCILED = "SlotsReconciled"
METRIC_ERRORS = "ReaperErrors"


@dataclass
class ReapReport:
    items_read: int = 0
    active: Counter[str] = field(default_factory=Counter)
    running_instances: int = 0
    actions: list[tuple[str, str, str]] = field(default_factory=list)  # (job id, action, reason)
    errors: int = 0

    def count(self, action: str) -> int:
        return sum(1 for _, name, _ in self.actions if name == action)


@dataclass
class _Pass:
    ctx: ControlPlane
    settings: Settings
    now: datetime
    report: ReapReport
    instances_by_id: dict[str, Instance]
    ended: set[str] = field(default_factory=set)  # jobs this pass ended or deleted

    def act(self, job_id: str, action: str, reason: str, **extra: Any) -> None:
        self.report.actions.append((job_id, action, reason))
        logger.info(f"reaper: {action}", extra={"job_id": job_id, "reason": reason, **extra})

    def older_than(self, timestamp: str | None, seconds: int) -> bool:
        return timestamp is None or self.now - clock.parse_iso(timestamp) > timedelta(seconds=seconds)

    def get(self, job_id: str) -> Job | None:
        self.report.items_read += 1
        return self.ctx.jobs.get(job_id, include_expired=True)


def reap(ctx: ControlPlane, settings: Settings, now: datetime | None = None) -> ReapReport:
    report = ReapReport()
    active: dict[JobStatus, list[Job]] = {}
    for status in STATUS_ORDER:
        active[status] = list(ctx.jobs.active_jobs(status))
        report.items_read += len(active[status])
        report.active[status.value] = len(active[status])
    ours = ctx.fleet.describe_ours()
    report.running_instances = len(ours)
    state = _Pass(ctx, settings, now or clock.now(), report, {i.instance_id: i for i in ours})
    now_epoch = clock.epoch(state.now)

    handlers = {
        JobStatus.RUNNING: _check_running,
        JobStatus.CANCELLING: _check_cancelling,
        JobStatus.PROVISIONING: _check_provisioning,
        JobStatus.PENDING: _check_pending,
    }
    queued: list[Job] = []
    for status in STATUS_ORDER:
        for job in active[status]:
            if job.is_expired(now_epoch):
                _guarded(state, job.job_id, _delete_expired, state, job, now_epoch)
            elif status is JobStatus.QUEUED:
                queued.append(job)
            else:
                _guarded(state, job.job_id, handlers[status], state, job)
    # The safety net for a lost slot release: queued jobs get any free slot.
    _guarded(state, "-", _launch_queued, state, queued)
    known = {job.job_id: job for jobs in active.values() for job in jobs}
    _guarded(state, "-", _reconcile_slots, state, known)
    _guarded(state, "-", _terminate_orphans, state, ours, known, now_epoch)
    _publish(report)
    return report


# -- the branches -----------------------------------------------------------------------


def _check_running(state: _Pass, job: Job) -> None:
    started = job.started_at or job.launched_at or job.created_at
    deadline = clock.parse_iso(started) + timedelta(
        seconds=job.options.job_timeout_seconds + state.settings.deadline_grace_seconds
    )
    if state.now > deadline:
        result = state.ctx.jobs.transition(
            job.job_id,
            [JobStatus.RUNNING],
            JobStatus.TIMEOUT,
            set_fields={"error": f"Job exceeded its time limit of {job.options.job_timeout_seconds} s"},
            only_if=_same_launch(job),
        )
        _ended(state, job, result, "timed_out", f"deadline {clock.iso(deadline)} passed", METRIC_TIMEOUTS)
        return
    last_write = job.heartbeat_at or job.started_at or job.launched_at
    if state.older_than(last_write, state.settings.heartbeat_timeout_seconds):
        # Conditional on the last write seen: a heartbeat that lands now keeps the job alive.
        result = state.ctx.jobs.transition(
            job.job_id,
            [JobStatus.RUNNING],
            JobStatus.FAILED,
            set_fields={
                "error": (
                    f"Worker heartbeat lost: last heartbeat at {last_write or 'never'}, none for more "
                    f"than {state.settings.heartbeat_timeout_seconds} s"
                )
            },
            only_if={**_same_launch(job), "updated_at": job.updated_at},
        )
        _ended(state, job, result, "reaped_stale", f"last heartbeat {last_write or 'never'}", METRIC_STALE)


def _check_cancelling(state: _Pass, job: Job) -> None:
    requested = job.cancel_requested_at or job.updated_at
    if state.older_than(requested, state.settings.cancel_grace_seconds):
        result = state.ctx.jobs.transition(
            job.job_id,
            [JobStatus.CANCELLING],
            JobStatus.CANCELLED,
            set_fields={"error": "Job was cancelled; the worker did not stop in time"},
            only_if=_same_launch(job),
        )
        _ended(state, job, result, "cancelled", f"cancel requested {requested}", METRIC_CANCELS)


def _check_provisioning(state: _Pass, job: Job) -> None:
    if not state.older_than(job.launched_at, state.settings.provisioning_grace_seconds):
        return
    settings, store = state.settings, state.ctx.jobs
    instance = state.instances_by_id.get(job.instance_id or "")
    why = "worker never started" if instance else "instance is gone"
    if job.attempt >= settings.max_launch_attempts:
        result = store.transition(
            job.job_id,
            [JobStatus.PROVISIONING],
            JobStatus.FAILED,
            set_fields={
                "error": (
                    f"Worker did not start within {settings.provisioning_grace_seconds} s "
                    f"of launch, {job.attempt} attempt(s)"
                )
            },
            only_if={"attempt": job.attempt, "updated_at": job.updated_at},
        )
        _ended(state, job, result, "start_failed", why, METRIC_START_FAILURES)
        return
    if job.instance_id:
        # Unhook the old instance first: its worker, should it start now, no longer finds
        # the job pointing at it and cannot take it over from the new one.
        fenced = store.transition(
            job.job_id,
            [JobStatus.PROVISIONING],
            JobStatus.PROVISIONING,
            remove_fields=["instance_id"],
            only_if={"attempt": job.attempt, "instance_id": job.instance_id, "updated_at": job.updated_at},
        )
        if not fenced.ok or fenced.job is None:
            return
        state.ctx.fleet.terminate([job.instance_id])
        job = fenced.job
    state.ctx.slots.restore([job.job_id])  # it never gave its slot back; make sure the ledger agrees
    outcome = launch(state.ctx, job)
    state.act(job.job_id, "relaunched", f"{why}; attempt {job.attempt + 1}: {outcome}")
    metrics.add_metric(name=METRIC_RELAUNCHES, unit=MetricUnit.Count, value=1)


def _check_pending(state: _Pass, job: Job) -> None:
    if state.older_than(job.created_at, state.settings.pending_grace_seconds):
        outcome = admit(state.ctx, job)
        state.act(job.job_id, "admitted", f"pending since {job.created_at}: {outcome}")


def _launch_queued(state: _Pass, queued: list[Job]) -> None:
    for job, outcome in zip(queued, admit_queued(state.ctx, queued), strict=False):
        state.act(job.job_id, "dequeued", f"queued since {job.updated_at}: {outcome}")


def _delete_expired(state: _Pass, job: Job, now_epoch: int) -> None:
    if job.instance_id:
        state.ctx.fleet.terminate([job.instance_id])
    if state.ctx.jobs.delete_expired(job.job_id, now_epoch):
        settle(state.ctx, job.job_id, None)
        state.ended.add(job.job_id)
        state.act(job.job_id, "deleted_expired", f"expired at {job.expires_at}")
        metrics.add_metric(name=METRIC_EXPIRED, unit=MetricUnit.Count, value=1)


def _reconcile_slots(state: _Pass, known: dict[str, Job]) -> None:
    """Make the ledger match the jobs: a holder keeps its slot while it has (or is about to
    have) an instance; a job with an instance holds a slot."""
    slots = state.ctx.slots
    holders = slots.holders()
    state.report.items_read += 1
    release: set[str] = set()
    for job_id in holders:
        seen = known.get(job_id)
        if seen is not None and seen.status in SLOT_USERS and job_id not in state.ended:
            continue
        job = state.get(job_id)  # consistent: this pass may have moved it on
        now_epoch = clock.epoch(state.now)
        if job is None or job.status.is_terminal or job.is_expired(now_epoch):
            release.add(job_id)
        elif job.status not in SLOT_USERS and state.older_than(
            job.updated_at, state.settings.slot_hold_grace_seconds
        ):
            release.add(job_id)  # a pending/queued holder nobody is launching; it queues again
    missing = [
        job.job_id
        for job in known.values()
        if job.status in SLOT_USERS and job.job_id not in holders and job.job_id not in state.ended
    ]
    restore = [job_id for job_id in missing if (job := state.get(job_id)) and job.status in SLOT_USERS]
    slots.release_all(release)
    slots.restore(restore)
    for job_id in sorted(release):
        state.act(job_id, "slot_released", "holder is not using its slot")
    for job_id in restore:
        state.act(job_id, "slot_restored", "job has an instance but held no slot")
    if release or restore:
        changed = len(release) + len(restore)
        metrics.add_metric(name=METRIC_SLOTS_RECONCILED, unit=MetricUnit.Count, value=changed)


def _terminate_orphans(state: _Pass, ours: list[Instance], known: dict[str, Job], now_epoch: int) -> None:
    orphans: dict[str, str] = {}
    for instance in ours:
        reason = _orphan_reason(state, instance, known, now_epoch)
        if reason:
            orphans[instance.instance_id] = reason
            state.act(instance.job_id or "-", "orphan_terminated", reason, instance_id=instance.instance_id)
    state.ctx.fleet.terminate(orphans)
    if orphans:
        metrics.add_metric(name=METRIC_ORPHANS, unit=MetricUnit.Count, value=len(orphans))


def _orphan_reason(state: _Pass, instance: Instance, known: dict[str, Job], now_epoch: int) -> str | None:
    if not instance.job_id:
        return "instance has no JobId tag"
    job = known.get(instance.job_id)
    if job is None or instance.job_id in state.ended:
        job = state.get(instance.job_id)
    if job is None:
        return "job is missing"
    if job.is_expired(now_epoch):
        return "job has expired"
    if job.status.is_terminal:
        return f"job is {job.status.value}"
    if job.instance_id != instance.instance_id:
        young = instance.launch_time is not None and state.now - instance.launch_time < timedelta(
            seconds=state.settings.orphan_grace_seconds
        )
        if not young:  # a young one may belong to a launch not yet recorded
            return f"job points at {job.instance_id or 'no instance'}"
    return None


# -- helpers ----------------------------------------------------------------------------


def _ended(state: _Pass, job: Job, result: WriteResult, action: str, reason: str, metric: str) -> None:
    """After a reaper's terminal write: if it took effect, end the instance and free the slot."""
    if not result.ok:
        return  # the worker (or another reaper) wrote first; its outcome stands
    settle(state.ctx, job.job_id, None, instances=[job.instance_id])
    state.ended.add(job.job_id)
    state.act(job.job_id, action, reason, instance_id=job.instance_id)
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)


def _same_launch(job: Job) -> dict[str, Any]:
    condition: dict[str, Any] = {"attempt": job.attempt}
    if job.instance_id:
        condition["instance_id"] = job.instance_id
    return condition


def _guarded(state: _Pass, job_id: str, step: Any, *args: Any) -> None:
    """One job's trouble (throttling that outlasted the retries, say) must not stop the
    pass for the others; the next pass tries again."""
    try:
        step(*args)
    except Exception:
        state.report.errors += 1
        metrics.add_metric(name=METRIC_ERRORS, unit=MetricUnit.Count, value=1)
        logger.exception("reaper step failed", extra={"job_id": job_id, "step": step.__name__})


def _publish(report: ReapReport) -> None:
    metrics.add_metric(name=METRIC_ACTIVE, unit=MetricUnit.Count, value=sum(report.active.values()))
    metrics.add_metric(name=METRIC_QUEUED, unit=MetricUnit.Count, value=report.active[JobStatus.QUEUED.value])
    metrics.add_metric(name=METRIC_RUNNING_INSTANCES, unit=MetricUnit.Count, value=report.running_instances)
