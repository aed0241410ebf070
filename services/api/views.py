"""What clients are shown of a job: the upstream 1.0 fields first, then the extras."""

from __future__ import annotations

from typing import Any

from jobs.job_logs import console_log_url, job_log_group
from jobs.record import Job
from jobs.states import status_for_client

# Extra progress fields are shown only when the worker knows them.
_OPTIONAL_PROGRESS_FIELDS = ("phase", "percent", "tables_completed", "tables_total", "bytes_copied")


def client_status(job: Job) -> tuple[str, str | None]:
    return status_for_client(job.status, job.schema_version, job.error, retrying=job.retrying)


def _log_url(log_group: str, job: Job) -> str:
    return console_log_url(job_log_group(log_group, job.job_id), job.job_id)


def job_view(job: Job, *, log_group: str, logs: list[str] | None = None) -> dict[str, Any]:
    """`log_url` is built here from the job id (the job's log group and stream are named
    after it), once the worker has started; never taken from the item, which a worker may
    write. `log_group`: the workers' log group, under which each job's group is."""
    status, error = client_status(job)
    progress: dict[str, Any] = {
        "message": job.progress.message,
        "current_database": job.progress.current_database,
        "databases_completed": job.progress.databases_completed,
        "databases_total": job.progress.databases_total,
    }
    for name in _OPTIONAL_PROGRESS_FIELDS:
        value = getattr(job.progress, name)
        if value is not None:
            progress[name] = value
    view: dict[str, Any] = {
        "job_id": job.job_id,
        "trace_id": job.trace_id,
        "status": status,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "error": error,
        "progress": progress,
        "log_url": _log_url(log_group, job) if job.started_at else None,
        "schema_version": job.schema_version,
        "command": job.command,
        "source": job.source,
        "target": job.target,
        "target_project_id": job.target_project_id,
        "target_branch_id": job.target_branch_id,
        "target_databases": job.target_databases,
        "updated_at": job.updated_at,
        "heartbeat_at": job.heartbeat_at,
        "cancel_requested_at": job.cancel_requested_at,
        "exit_code": job.exit_code,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "capacity": job.capacity,
        "lost_attempts": [
            {"attempt": lost.attempt, "reason": lost.reason, "at": lost.at} for lost in job.lost_attempts
        ],
    }
    if logs is not None:
        view["logs"] = logs
    return view


def submit_view(job: Job) -> dict[str, Any]:
    status, _ = client_status(job)
    return {"job_id": job.job_id, "trace_id": job.trace_id, "status": status}
