"""What a worker reports about its job. No AWS imports.

A worker writes nothing but its own report item, keyed by its caller id
(`jobs.worker_identity`), which IAM lets no other worker write. The control plane copies
each report into the job item, only while the job is still assigned to that very instance
and attempt (`control_plane.reports`), and marks the job item with the report it applied
(`ReportMark`): that mark is how the worker learns its report took effect.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobs import clock
from jobs.attempts import DatabaseCheckpoint, LossKind
from jobs.progress import Progress
from jobs.states import JobStatus

# On the report item: the worker's latest report.
REPORT_ATTRIBUTE = "report"
# On the job item: the last report applied (ReportMark).
REPORTED_ATTRIBUTE = "reported"
# A report item outlives its job's last write by this long, then TTL removes it.
REPORT_RETENTION_SECONDS = 2 * 24 * 3600
# Ends a worker may report; anything else is the control plane's to decide.
WORKER_OUTCOMES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMEOUT})
MAX_ERROR_LENGTH = 4000
# The years a report's time may name: the control plane adds runtime limits to these times,
# so one near the calendar's end would overflow every reaper pass that reads the job.
REPORT_YEARS = range(2000, 3000)


class ReportKind(StrEnum):
    START = "start"  # provisioning -> running
    BEAT = "beat"  # heartbeat, with progress when there is new progress
    CHECKPOINT = "checkpoint"  # a database started or finished
    OUTCOME = "outcome"  # the job's end
    HAND_BACK = "hand_back"  # the attempt is lost (an interruption): the next one starts


class WorkerReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(min_length=1, max_length=128)
    attempt: int = Field(ge=0)
    # Increases with every report of one instance: the mark the worker waits for.
    seq: int = Field(ge=1)
    kind: ReportKind
    at: str = Field(min_length=1, max_length=64)
    progress: Progress | None = None
    started_at: str | None = Field(default=None, max_length=64)
    checkpoint: dict[str, DatabaseCheckpoint] | None = None
    status: JobStatus | None = None
    error: str | None = Field(default=None, max_length=MAX_ERROR_LENGTH)
    exit_code: int | None = None
    loss_kind: LossKind | None = None
    loss_reason: str | None = Field(default=None, max_length=MAX_ERROR_LENGTH)

    @field_validator("at", "started_at")
    @classmethod
    def _a_time(cls, value: str | None) -> str | None:
        """A time the control plane can compute with, written as the service writes times."""
        if value is None:
            return None
        try:
            moment = clock.parse_iso(value)  # a ValueError: not a time
        except OverflowError as exc:  # in UTC, before year 1 or after 9999
            raise ValueError("a report's time must be a time of the calendar") from exc
        if moment.year not in REPORT_YEARS:
            raise ValueError(
                f"a report's time must fall in the years {REPORT_YEARS.start}-{REPORT_YEARS.stop - 1}"
            )
        return clock.iso(moment)

    @model_validator(mode="after")
    def _complete_for_its_kind(self) -> WorkerReport:
        if self.kind is ReportKind.OUTCOME and self.status not in WORKER_OUTCOMES:
            raise ValueError(f"an outcome report needs a status among {sorted(WORKER_OUTCOMES)}")
        if self.kind is ReportKind.CHECKPOINT and self.checkpoint is None:
            raise ValueError("a checkpoint report needs the checkpoint")
        if self.kind is ReportKind.HAND_BACK and (self.loss_kind is None or not self.loss_reason):
            raise ValueError("a hand-back report needs the loss's kind and reason")
        return self


class ReportMark(BaseModel):
    """The last report the control plane applied to a job item."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    instance_id: str
    seq: int

    def covers(self, instance_id: str, seq: int) -> bool:
        return self.instance_id == instance_id and self.seq >= seq
