"""The reaper's pass: read a snapshot, plan (`services.reaper.plan`, pure), apply.

Its reads are the sparse active-jobs index (one query per active status), the instances
tagged as ours and the slot ledger, plus a consistent read for the few jobs or slot
holders the snapshot does not explain: its cost follows the active jobs and instances,
never the table's history.

Expired items: an unfinished job past its TTL shows up in the active index and is deleted
here (after its instance and slot are let go). A finished job past its TTL is left to
DynamoDB's TTL deletion: every read already treats an expired item as gone, and finding
them without a Scan would need an index of all finished jobs, which is the history.

Every write is conditional on what the pass read (status, launch attempt, instance, and
for a stale heartbeat the last write time), so a worker that just wrote wins, and two
reapers running at once reach the same single outcome. Each action is applied on its
own: one job's trouble (throttling that outlasted the retries, say) does not stop the
pass for the others; the next pass tries again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from control_plane.admission import admit, admit_queued
from control_plane.context import ControlPlane
from control_plane.holdings import WAITING, Holdings
from control_plane.launch import Outcome
from control_plane.reports import catch_up
from control_plane.retry import after_loss, record_loss, why_gone
from control_plane.settle import settle
from control_plane.telemetry import logger, metrics
from jobs import clock
from jobs.record import Job
from jobs.states import JobStatus
from services.reaper.plan import (
    STATUS_ORDER,
    Action,
    Admit,
    DeleteExpired,
    Dequeue,
    EndJob,
    LoseAttempt,
    Metric,
    ReconcileSlots,
    Relaunch,
    Snapshot,
    TerminateOrphans,
    orphan_reason,
    plan,
    slot_unused,
)
from services.reaper.settings import Settings


@dataclass
class ReapReport:
    items_read: int = 0
    active: Counter[str] = field(default_factory=Counter)
    running_instances: int = 0
    actions: list[tuple[str, str, str]] = field(default_factory=list)  # (job id, action, reason)
    errors: int = 0

    def count(self, action: str) -> int:
        return sum(1 for _, name, _ in self.actions if name == action)


def reap(cp: ControlPlane, settings: Settings, now: datetime | None = None) -> ReapReport:
    report = ReapReport()
    snapshot = read_snapshot(cp, report)
    moment = now or clock.now()
    applying = _Apply(cp, settings, moment, report)
    for action in plan(snapshot, moment, settings):
        applying.guarded(action)
    _publish(report)
    return report


def read_snapshot(cp: ControlPlane, report: ReapReport) -> Snapshot:
    active = {status: list(cp.jobs.active_jobs(status)) for status in STATUS_ORDER}
    for status, jobs in active.items():
        report.items_read += len(jobs)
        report.active[status.value] = len(jobs)
    ours = cp.fleet.describe_ours()
    report.running_instances = len(ours)
    holders = cp.slots.holders()
    report.items_read += 1
    return Snapshot(active=active, instances=ours, holders=holders)


@dataclass
class _Apply:
    cp: ControlPlane
    settings: Settings
    now: datetime
    report: ReapReport

    def guarded(self, action: Action) -> None:
        try:
            self.apply(action)
        except Exception:
            self.report.errors += 1
            metrics.add_metric(name=Metric.ERRORS, unit=MetricUnit.Count, value=1)
            job = getattr(action, "job", None)
            logger.exception(
                "reaper step failed",
                extra={"job_id": job.job_id if isinstance(job, Job) else "-", "step": type(action).__name__},
            )

    def apply(self, action: Action) -> None:
        match action:
            case EndJob():
                self._end(action)
            case LoseAttempt():
                self._lose(action)
            case Relaunch():
                self._next_attempt(action.job, "next_attempt", action.why)
            case Admit(job=job):
                outcome = admit(self.cp, job)
                self._act(job.job_id, "admitted", f"pending since {job.created_at}: {outcome}")
            case Dequeue(jobs=queued):
                for job, outcome in admit_queued(self.cp, queued):
                    self._act(job.job_id, "dequeued", f"queued since {job.updated_at}: {outcome}")
            case DeleteExpired(job=job):
                self._delete_expired(job)
            case ReconcileSlots():
                self._reconcile(action)
            case TerminateOrphans():
                self._terminate_orphans(action)

    # -- the actions ------------------------------------------------------------------

    def _end(self, end: EndJob) -> None:
        job = end.job
        result = self.cp.jobs.transition(
            job.job_id, [job.status], end.to_status, set_fields={"error": end.error}, only_if=end.only_if
        )
        if not result.ok:
            return  # the worker (or another reaper) wrote first; its outcome stands
        settle(self.cp, job.job_id, job.owner, None, instances=[job.instance_id])
        self._act(job.job_id, end.action, end.reason, instance_id=job.instance_id)
        metrics.add_metric(name=end.metric, unit=MetricUnit.Count, value=1)

    def _lose(self, lose: LoseAttempt) -> None:
        job, kind, reason = lose.job, lose.kind, lose.reason
        # The worker's reports reach the job through the stream, which may lag or have given
        # a record up: one not yet applied (a heartbeat, the outcome before the worker
        # terminated its instance) is applied now, and the next pass judges the job anew.
        caught_up = catch_up(self.cp.jobs, self.cp.settings.worker_role_id, job)
        if caught_up is not None and caught_up.ok:
            self._act(
                job.job_id, "report_applied", f"not lost: a report of {job.instance_id} was not yet applied"
            )
            return
        if lose.ask_state_reason and job.instance_id:
            kind, reason = why_gone(kind, reason, self.cp.fleet.state_reason(job.instance_id))
        if not record_loss(self.cp, job, kind, reason, only_if=lose.only_if).ok:
            return  # the worker wrote (or handed the job back) first
        metrics.add_metric(name=lose.metric, unit=MetricUnit.Count, value=1)
        self._next_attempt(job, "attempt_lost", reason)

    def _next_attempt(self, job: Job, action: str, why: str) -> None:
        outcome = after_loss(self.cp, job.job_id)
        self._act(job.job_id, action, f"{why}; attempt {job.attempt + 1}: {outcome}")
        if outcome is Outcome.LAUNCHED:
            metrics.add_metric(name=Metric.RELAUNCHES, unit=MetricUnit.Count, value=1)

    def _delete_expired(self, job: Job) -> None:
        if job.instance_id:
            self.cp.fleet.terminate([job.instance_id])
        if self.cp.jobs.delete_expired(job.job_id, clock.epoch(self.now)):
            settle(self.cp, job.job_id, job.owner, None)
            if self.cp.job_logs is not None:
                self.cp.job_logs.delete(job.job_id)
            self._act(job.job_id, "deleted_expired", f"expired at {job.expires_at}")
            metrics.add_metric(name=Metric.EXPIRED, unit=MetricUnit.Count, value=1)

    def _reconcile(self, reconcile: ReconcileSlots) -> None:
        """Make the ledger match the jobs as they are now."""
        now_epoch = clock.epoch(self.now)
        release, released = [], []
        for job_id in reconcile.release_if_unused:
            job = self._read(job_id)
            if not slot_unused(job, self.now, self.settings):
                continue
            if job is None or job.status not in WAITING:
                release.append(job_id)
            # A waiting job's slot is in use while a launcher holds the claim of its next attempt.
            elif self.cp.slots.release_unless_launching(job, now_epoch=now_epoch):
                released.append(job_id)
        restore = [
            job
            for job_id in reconcile.restore_if_held
            if (job := self._read(job_id)) is not None and Holdings.of(job, now_epoch).slot
        ]
        self.cp.slots.release_all(release)
        self.cp.slots.restore(restore)
        release += released
        for job_id in release:
            self._act(job_id, "slot_released", "holder is not using its slot")
        for job in restore:
            self._act(job.job_id, "slot_restored", "job has an instance but held no slot")
        if release or restore:
            metrics.add_metric(
                name=Metric.SLOTS_RECONCILED, unit=MetricUnit.Count, value=len(release) + len(restore)
            )

    def _terminate_orphans(self, found: TerminateOrphans) -> None:
        orphans = dict((instance.instance_id, (instance, reason)) for instance, reason in found.orphans)
        for instance in found.check:
            reason = orphan_reason(instance, self._read(instance.job_id or ""), self.now, self.settings)
            if reason:
                orphans[instance.instance_id] = (instance, reason)
        for instance, reason in orphans.values():
            self._act(instance.job_id or "-", "orphan_terminated", reason, instance_id=instance.instance_id)
        self.cp.fleet.terminate(orphans)
        if orphans:
            metrics.add_metric(name=Metric.ORPHANS, unit=MetricUnit.Count, value=len(orphans))

    # -- helpers ----------------------------------------------------------------------

    def _read(self, job_id: str) -> Job | None:
        self.report.items_read += 1
        return self.cp.jobs.get(job_id, include_expired=True)

    def _act(self, job_id: str, action: str, reason: str, **extra: Any) -> None:
        self.report.actions.append((job_id, action, reason))
        logger.info(f"reaper: {action}", extra={"job_id": job_id, "reason": reason, **extra})


def _publish(report: ReapReport) -> None:
    metrics.add_metric(name=Metric.ACTIVE, unit=MetricUnit.Count, value=sum(report.active.values()))
    metrics.add_metric(name=Metric.QUEUED, unit=MetricUnit.Count, value=report.active[JobStatus.QUEUED.value])
    metrics.add_metric(name=Metric.RUNNING_INSTANCES, unit=MetricUnit.Count, value=report.running_instances)
