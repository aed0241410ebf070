"""What clients are shown of a job: the upstream 1.0 fields first, then the extras."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jobs import clock
from jobs.job_logs import console_log_url, job_log_group
from jobs.record import Job
from jobs.states import status_for_client

# Extra progress fields are shown only when the worker knows them.
_OPTIONAL_PROGRESS_FIELDS = ("phase", "percent", "tables_completed", "tables_total", "bytes_copied")


def client_status(job: Job) -> tuple[str, str | None]:
    return status_for_client(job.status, job.schema_version, job.error, retrying=job.retrying)


def _log_url(log_group: str, job: Job) -> str:
    return console_log_url(job_log_group(log_group, job.job_id), job.job_id)


def deadline_at(job: Job, max_runtime_seconds: int) -> str | None:
    """When the job's time limit ends it: its start plus the run time it is granted under
    the operator's maximum (the reaper's rule, without its grace); None before it starts,
    or when the item's start time does not parse (an item is not trusted to be well formed)."""
    if job.started_at is None:
        return None
    try:
        started = clock.parse_iso(job.started_at)
    except ValueError:
        return None
    return clock.iso(started + timedelta(seconds=job.options.runtime_limit(max_runtime_seconds)))


def job_view(
    job: Job, *, log_group: str, max_runtime_seconds: int, logs: list[str] | None = None
) -> dict[str, Any]:
    """`log_url` is built here from the job id (the job's log group and stream are named
    after it), once the worker has started; never taken from the item, which a worker may
    write. `log_group`: the workers' log group, under which each job's group is;
    `max_runtime_seconds`: the operator's longest run time."""
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
        "deadline_at": deadline_at(job, max_runtime_seconds),
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
