"""The worker's writes to its own job's item. Each is conditioned on the job still being
assigned to this instance and attempt, so a relaunched, retried or reaped job is never
overwritten by a worker that comes back late.

Two tables with different botocore retry budgets: heartbeats retry briefly (the next one
comes anyway), the writes that must land (running, the outcome) retry longer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs import aws
from jobs.attempts import DatabaseCheckpoint, LostAttempt, loss_fields
from jobs.progress import Progress
from jobs.record import Job
from jobs.states import JobStatus, sources_of
from jobs.store import JobStore, WriteResult


@dataclass(frozen=True)
class Outcome:
    status: JobStatus
    error: str | None = None
    exit_code: int | None = None


class JobItem:
    def __init__(
        self,
        job_id: str,
        instance_id: str,
        *,
        table_name: str,
        heartbeat_attempts: int,
        status_attempts: int,
    ) -> None:
        self.job_id = job_id
        self.instance_id = instance_id
        self.reader = JobStore(table_name, table=aws.table(table_name, total_attempts=status_attempts))
        self._heartbeats = JobStore(
            table_name, table=aws.table(table_name, total_attempts=heartbeat_attempts)
        )
        self._ours: dict[str, Any] = {"instance_id": instance_id}

    def bind(self, job: Job) -> None:
        """Every later write also names the attempt this instance was launched for."""
        self._ours = {"instance_id": self.instance_id, "attempt": job.attempt}

    def start(self, *, progress: Progress, now_iso: str, started_at: str | None = None) -> WriteResult:
        """provisioning -> running; `started_at` is the first attempt's start (the job's
        deadline counts from it). Where the logs are follows from the job id: the worker may
        not write it."""
        return self.reader.transition(
            self.job_id,
            [JobStatus.PROVISIONING],
            JobStatus.RUNNING,
            set_fields={
                "started_at": started_at or now_iso,
                "heartbeat_at": now_iso,
                "progress": progress.model_dump(mode="json"),
            },
            only_if=self._ours,
        )

    def beat(self, now_iso: str, progress: Progress | None) -> WriteResult:
        fields: dict[str, Any] = {"heartbeat_at": now_iso}
        if progress is not None:
            fields["progress"] = progress.model_dump(mode="json")
        return self._heartbeats.update_active(self.job_id, fields, only_if=self._ours)

    def finish(self, outcome: Outcome, progress: Progress | None) -> WriteResult:
        """The outcome, from whichever active status the job may be in by now."""
        fields: dict[str, Any] = {}
        if outcome.error is not None:
            fields["error"] = outcome.error
        if outcome.exit_code is not None:
            fields["exit_code"] = outcome.exit_code
        if progress is not None:
            fields["progress"] = progress.model_dump(mode="json")
        sources = sources_of(outcome.status) & {
            JobStatus.PROVISIONING,
            JobStatus.RUNNING,
            JobStatus.CANCELLING,
        }
        return self.reader.transition(
            self.job_id, sources, outcome.status, set_fields=fields, only_if=self._ours
        )

    def save_checkpoint(self, checkpoint: dict[str, DatabaseCheckpoint]) -> WriteResult:
        fields = {"checkpoint": _checkpoint_value(checkpoint)}
        return self.reader.update_active(self.job_id, fields, only_if=self._ours)

    def hand_back(
        self,
        loss: LostAttempt,
        lost_before: list[LostAttempt],
        checkpoint: dict[str, DatabaseCheckpoint],
        progress: Progress | None,
    ) -> WriteResult:
        """running -> provisioning without this instance: the attempt is lost (an interruption),
        the control plane starts the next one (control_plane.retry)."""
        fields: dict[str, Any] = {
            **loss_fields(lost_before, loss),
            "checkpoint": _checkpoint_value(checkpoint),
        }
        if progress is not None:
            fields["progress"] = progress.model_dump(mode="json")
        return self.reader.transition(
            self.job_id,
            [JobStatus.RUNNING],
            JobStatus.PROVISIONING,
            set_fields=fields,
            remove_fields=["instance_id"],
            only_if=self._ours,
        )

    def wipe_credentials(self) -> None:
        """Also after an outcome that could not be written; never for a job relaunched elsewhere."""
        self.reader.wipe_credentials(self.job_id, only_if=self._ours)


def _checkpoint_value(checkpoint: dict[str, DatabaseCheckpoint]) -> dict[str, Any]:
    return {name: entry.model_dump(mode="json") for name, entry in checkpoint.items()}
