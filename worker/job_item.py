"""The worker's writes to its own job's item. Each is conditioned on the job still being
assigned to this instance, so a relaunched or reaped job is never overwritten.

Two tables with different botocore retry budgets: heartbeats retry briefly (the next one
comes anyway), the writes that must land (running, the outcome) retry longer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jobs import aws
from jobs.progress import Progress
from jobs.states import JobStatus, sources_of
from jobs.store import JobStore, WriteResult


@dataclass(frozen=True)
class Outcome:
    status: JobStatus
    error: str | None = None
    exit_code: int | None = None


def console_log_url(group: str, stream: str) -> str:
    """The CloudWatch console page of one log stream (the console double-encodes names, '%' as '$')."""

    def encode(name: str) -> str:
        return quote(quote(name, safe=""), safe="").replace("%", "$")

    where = aws.region()
    return (
        f"https://{where}.console.aws.amazon.com/cloudwatch/home?region={where}"
        f"#logsV2:log-groups/log-group/{encode(group)}/log-events/{encode(stream)}"
    )


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
        self._ours = {"instance_id": instance_id}

    def start(self, *, log_group: str, progress: Progress, now_iso: str) -> WriteResult:
        """provisioning -> running, with the start time and where the logs are."""
        return self.reader.transition(
            self.job_id,
            [JobStatus.PROVISIONING],
            JobStatus.RUNNING,
            set_fields={
                "started_at": now_iso,
                "heartbeat_at": now_iso,
                "log_group": log_group,
                "log_stream": self.job_id,
                "log_url": console_log_url(log_group, self.job_id),
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

    def wipe_credentials(self) -> None:
        """Also after an outcome that could not be written; never for a job relaunched elsewhere."""
        self.reader.wipe_credentials(self.job_id, only_if=self._ours)
