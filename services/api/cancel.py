"""Cancelling a job: every decision is a conditional transition from the status it saw.

pending/queued/provisioning jobs are cancelled at once: the launcher's own writes are
conditional on the status it expects, so it never launches (or keeps) a cancelled job,
and a provisioning job's instance is terminated by the launcher or the reaper. A running
job becomes `cancelling` and its worker stops within a heartbeat.
"""

from __future__ import annotations

from http import HTTPStatus

from jobs import clock
from jobs.record import Job
from jobs.states import JobStatus
from services.api.errors import ApiError, job_not_found
from services.api.queries import owned_job
from services.api.resources import Resources

_CANCEL_AT_ONCE = frozenset({JobStatus.PENDING, JobStatus.QUEUED, JobStatus.PROVISIONING})


def cancel_job(res: Resources, owner: str, job_id: str) -> Job:
    job = owned_job(res, owner, job_id)
    # If another writer changes the status between our read and our write, decide once
    # more from what it wrote.
    for _ in range(2):
        if job.status.is_terminal:
            raise ApiError(
                HTTPStatus.CONFLICT, f"Job has already ended ({job.status.value})", reason="already_ended"
            )
        if job.status is JobStatus.CANCELLING:
            return job  # asked before: the worker is already stopping
        target = JobStatus.CANCELLED if job.status in _CANCEL_AT_ONCE else JobStatus.CANCELLING
        result = res.jobs.transition(
            job_id, [job.status], target, set_fields={"cancel_requested_at": clock.now_iso()}
        )
        if result.ok and result.job is not None:
            return result.job
        if result.job is None:
            raise job_not_found()
        job = result.job
    raise ApiError(
        HTTPStatus.CONFLICT, "Job status changed while cancelling; try again", reason="cancel_race"
    )
