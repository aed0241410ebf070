"""The API's answers as models: what `docs/openapi.json` declares for each status.

The views are built as plain dicts (`services.api.views`); these models describe them for
the OpenAPI document and for the tests that check every answer against it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from jobs.progress import MAX_MESSAGE_LENGTH
from jobs.spec import DEFAULT_JOB_TIMEOUT_SECONDS, MAX_JOB_TIMEOUT_SECONDS
from jobs.states import JobStatus

# The four words a 1.0 client (the deployed replicator CLI) knows.
V1_STATUSES = Literal["provisioning", "running", "completed", "failed"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Answer):
    """Every refusal: a sentence for a person (it never repeats credentials)."""

    error: str = Field(examples=["Job not found"])


class GatewayError(_Answer):
    """API Gateway's own refusals, before the function runs: 404 for a method and path
    without a route, 413 for a body over 10 MB, 429 when throttled, 500/503."""

    message: str = Field(examples=["Not Found"])


# What any error status may carry: the function's answer or the gateway's.
ErrorAnswer = ErrorBody | GatewayError


class SubmitAnswer(_Answer):
    job_id: str = Field(description="The job's id (a UUID)")
    trace_id: str
    status: str = Field(
        description="provisioning for schema 1.0 clients; pending (or the job's status, for an "
        "idempotent retry) for 1.1"
    )


class ProgressView(_Answer):
    message: str | None = Field(max_length=MAX_MESSAGE_LENGTH)
    current_database: str | None
    databases_completed: int = Field(ge=0)
    databases_total: int = Field(ge=0)
    # Shown only when the engine reports them.
    phase: str | None = None
    percent: float | None = Field(default=None, ge=0, le=100)
    tables_completed: int | None = Field(default=None, ge=0)
    tables_total: int | None = Field(default=None, ge=0)
    bytes_copied: int | None = Field(default=None, ge=0)


class LostAttemptView(_Answer):
    attempt: int = Field(ge=0)
    reason: str = Field(
        examples=["worker heartbeat lost: last at 2026-01-01T00:00:00Z, none for more than 300 s"]
    )
    at: str = Field(description="When the loss was recorded; ISO-8601 UTC, with Z")


class _JobView(_Answer):
    job_id: str
    trace_id: str
    created_at: str = Field(description="ISO-8601 UTC, with Z")
    started_at: str | None
    completed_at: str | None
    deadline_at: str | None = Field(
        description="When the job's time limit ends it (timeout): its start plus the run time it "
        f"was granted (options.job_timeout_seconds, default {DEFAULT_JOB_TIMEOUT_SECONDS} s, at most "
        f"the operator's maximum, {MAX_JOB_TIMEOUT_SECONDS} s unless set lower); ISO-8601 UTC, with Z; "
        "null until the job starts"
    )
    error: str | None
    progress: ProgressView
    log_url: str | None
    command: str
    source: str = Field(description="postgresql://host:port/database, without credentials")
    target: str
    target_project_id: str | None
    target_branch_id: str | None
    target_databases: list[str] | None
    updated_at: str
    heartbeat_at: str | None
    cancel_requested_at: str | None
    exit_code: int | None
    attempt: int = Field(ge=0, description="The job's current attempt; each runs on a new instance")
    max_attempts: int | None = Field(
        default=None, description="Attempts the job may use, once launched; None before that"
    )
    capacity: Literal["spot", "on-demand"] | None = Field(
        default=None,
        description="How the current attempt's instance is bought: spot (EC2 may take it back; "
        "the job then goes on with its next attempt) or on-demand; None before the first launch",
    )
    lost_attempts: list[LostAttemptView] = Field(
        default_factory=list,
        description="Attempts lost to the infrastructure (instance gone, heartbeat lost, Spot "
        "interruption), oldest first; the job went on with the next attempt",
    )
    logs: list[str] | None = Field(
        default=None, description="The last worker log lines; only in GET /jobs/{job_id} of a failed job"
    )


class JobViewV1(_JobView):
    """A job submitted with schema 1.0 (or none): timeout and cancelled show as failed."""

    schema_version: Literal["1.0"]
    status: V1_STATUSES


class JobViewV11(_JobView):
    """A job submitted with schema 1.1: every status."""

    schema_version: Literal["1.1"]
    status: JobStatus


JobView = JobViewV1 | JobViewV11


class JobPage(_Answer):
    jobs: list[JobView]
    next_token: str | None = Field(description="Pass it back as next_token for the next page")


class LogLines(_Answer):
    job_id: str
    logs: list[str]


class Health(_Answer):
    status: Literal["ok"]
