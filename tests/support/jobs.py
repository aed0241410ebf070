"""The one job factory of the tests and benches: a valid job with plain defaults."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from jobs import clock
from jobs.record import Job
from jobs.states import JobStatus

RETENTION = timedelta(days=30)


def new_job(
    status: JobStatus = JobStatus.PENDING,
    *,
    created: datetime | None = None,
    retention: timedelta = RETENTION,
    **fields: Any,
) -> Job:
    """A job in `status`, created at `created` (now by default) and expiring `retention`
    after now; `fields` set anything else (`job_id`, `owner`, `options`, ...)."""
    moment = created or clock.now()
    values: dict[str, Any] = {
        "job_id": str(uuid.uuid4()),
        "owner": "owner-1",
        "trace_id": str(uuid.uuid4()),
        "command": "init",
        "status": status,
        "source": "postgresql://source.example.com:5432/app",
        "target": "postgresql://target.serendb.com:5432/app",
        "created_at": clock.iso(moment),
        "updated_at": clock.iso(moment),
        "expires_at": clock.epoch(clock.now() + retention),
        **fields,
    }
    return Job.model_validate(values)
