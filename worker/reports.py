"""The worker's reports about its job.

The worker writes only its own report item, keyed by its caller id (`jobs.worker_identity`):
IAM lets no worker write another's, nor any job item. The control plane copies each report
into the job item while the job is still assigned to this instance and attempt
(`control_plane.reports`) and marks the item with the report it applied, so the worker
learns a report's fate by reading its job item: applied (the mark covers it), refused (the
job was cancelled, reassigned or reaped meanwhile), or not known yet.

The start is waited for as long as the job stays provisioning for this instance, however
late the control plane copies it: giving up would cost the job an attempt. The reaper bounds
that wait (after its provisioning grace it applies the start itself or records the instance
lost), and so does the instance's shutdown.

Two tables with different botocore retry budgets: heartbeats retry briefly (the next one
comes anyway), the reports that must land (the start, the outcome) retry longer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jobs import aws, clock
from jobs.attempts import DatabaseCheckpoint, LossKind
from jobs.dynamo_values import to_dynamo
from jobs.progress import Progress
from jobs.record import Job
from jobs.reports import REPORT_ATTRIBUTE, REPORT_RETENTION_SECONDS, ReportKind, WorkerReport
from jobs.states import JobStatus
from jobs.store import JobStore
from jobs.worker_identity import worker_user_id


@dataclass(frozen=True)
class Outcome:
    status: JobStatus
    error: str | None = None
    exit_code: int | None = None


class Fate(StrEnum):
    APPLIED = "applied"
    REFUSED = "refused"  # the job is no longer this attempt's, or not in a status the report fits
    UNKNOWN = "unknown"  # not applied within the wait


@dataclass(frozen=True)
class Reported:
    fate: Fate
    job: Job | None  # the job item as last read

    @property
    def ok(self) -> bool:
        return self.fate is Fate.APPLIED


class Reports:
    def __init__(
        self,
        job_id: str,
        instance_id: str,
        *,
        role_id: str,
        table_name: str,
        heartbeat_attempts: int,
        status_attempts: int,
        wait_seconds: float,
        poll_seconds: float,
        shutting_down: threading.Event,
    ) -> None:
        self.job_id = job_id
        self.instance_id = instance_id
        self.key = worker_user_id(role_id, instance_id)
        self._table = aws.table(table_name, total_attempts=status_attempts)
        self.reader = JobStore(table_name, table=self._table)
        self._heartbeats = aws.table(table_name, total_attempts=heartbeat_attempts)
        self._wait_seconds = wait_seconds
        self._poll_seconds = poll_seconds
        self._shutting_down = shutting_down
        self.attempt = 0
        self._seq = 0

    def bind(self, job: Job) -> None:
        """Every report names the attempt this instance was launched for."""
        self.attempt = job.attempt

    def ours(self, job: Job | None) -> bool:
        return job is not None and job.instance_id == self.instance_id and job.attempt == self.attempt

    # -- reports -------------------------------------------------------------------------

    def start(self, *, progress: Progress, now_iso: str, started_at: str | None = None) -> Reported:
        """provisioning -> running; `started_at` is the first attempt's start (the job's
        deadline counts from it)."""
        seq = self._send(ReportKind.START, progress=progress, started_at=started_at or now_iso, at=now_iso)
        return self._wait(
            seq, lambda job: self.ours(job) and _status(job) is JobStatus.PROVISIONING, bounded=False
        )

    def beat(self, now_iso: str, progress: Progress | None) -> Job | None:
        """A heartbeat, not waited for; the job item as it is now (None: gone)."""
        self._send(ReportKind.BEAT, progress=progress, at=now_iso, table=self._heartbeats)
        return self.reader.get(self.job_id)

    def save_checkpoint(self, checkpoint: dict[str, DatabaseCheckpoint]) -> Reported:
        seq = self._send(ReportKind.CHECKPOINT, checkpoint=checkpoint)
        return self._wait(seq, self._running_here)

    def finish(self, outcome: Outcome, progress: Progress | None) -> Reported:
        """The outcome, from whichever status the job may be in by now."""
        seq = self._send(
            ReportKind.OUTCOME,
            status=outcome.status,
            error=outcome.error,
            exit_code=outcome.exit_code,
            progress=progress,
        )
        return self._wait(seq, lambda job: self.ours(job) and not _status(job).is_terminal)

    def hand_back(
        self,
        kind: LossKind,
        reason: str,
        checkpoint: dict[str, DatabaseCheckpoint],
        progress: Progress | None,
    ) -> Reported:
        """running -> provisioning without this instance: the attempt is lost (an interruption),
        the control plane starts the next one (control_plane.retry)."""
        seq = self._send(
            ReportKind.HAND_BACK, loss_kind=kind, loss_reason=reason, checkpoint=checkpoint, progress=progress
        )
        # Only a running job is handed back (control_plane.reports): a cancelling one never will be.
        return self._wait(seq, lambda job: self.ours(job) and _status(job) is JobStatus.RUNNING)

    # -- the report item ---------------------------------------------------------------------

    def _running_here(self, job: Job | None) -> bool:
        return self.ours(job) and _status(job) in (JobStatus.RUNNING, JobStatus.CANCELLING)

    def _send(self, kind: ReportKind, *, table: Any = None, **fields: Any) -> int:
        # From the clock, so that a worker restarted on this instance numbers its reports
        # after its predecessor's: the mark those left must not pass for the new ones.
        self._seq = max(self._seq + 1, time.time_ns() // 1000)
        report = WorkerReport(
            job_id=self.job_id,
            attempt=self.attempt,
            seq=self._seq,
            kind=kind,
            at=fields.pop("at", None) or clock.now_iso(),
            **fields,
        )
        (table or self._table).update_item(
            Key={"job_id": self.key},
            UpdateExpression="SET #report = :report, #expires = :expires",
            ExpressionAttributeNames={"#report": REPORT_ATTRIBUTE, "#expires": "expires_at"},
            ExpressionAttributeValues={
                ":report": to_dynamo(report.model_dump(mode="json", exclude_none=True)),
                ":expires": clock.epoch(clock.now()) + REPORT_RETENTION_SECONDS,
            },
        )
        return self._seq

    def _wait(self, seq: int, pending: Callable[[Job | None], bool], *, bounded: bool = True) -> Reported:
        """Until the job item shows report `seq` applied, or no longer `pending` it; `bounded`,
        for REPORT_WAIT_SECONDS at most, else until the instance starts shutting down."""
        deadline = time.monotonic() + self._wait_seconds
        while True:
            job = self.reader.get(self.job_id)
            if job is not None and job.reported is not None and job.reported.covers(self.instance_id, seq):
                return Reported(Fate.APPLIED, job)
            if not pending(job):
                return Reported(Fate.REFUSED, job)
            gave_up = time.monotonic() >= deadline if bounded else self._shutting_down.is_set()
            if gave_up:
                return Reported(Fate.UNKNOWN, job)
            time.sleep(self._poll_seconds)


def _status(job: Job | None) -> JobStatus:
    """The status of a job `Reports.ours` accepted (so not None)."""
    assert job is not None
    return job.status
