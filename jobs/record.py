"""The job record: what one item of the jobs table holds. No AWS imports.

Attribute names here are the table's schema; `jobs.tables` declares the keys and indexes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobs.attempts import DatabaseCheckpoint, LostAttempt
from jobs.dynamo_values import from_dynamo
from jobs.progress import Progress
from jobs.reports import ReportMark
from jobs.spec import JobFilter, JobOptions, ProjectTarget
from jobs.states import ACTIVE, RETRY_STATUSES, JobStatus


class Job(BaseModel):
    """One job as stored, minus its encrypted credentials (never part of this model)."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    owner: str
    trace_id: str
    schema_version: str = "1.0"
    command: str
    status: JobStatus
    filter: JobFilter = Field(default_factory=JobFilter)
    options: JobOptions = Field(default_factory=JobOptions)
    source: str  # redacted: postgresql://host:port/db
    target: str
    # A SerenDB project target (its console key is with the encrypted credentials).
    target_project_id: str | None = None
    target_branch_id: str | None = None
    target_databases: list[str] | None = None
    created_at: str
    updated_at: str
    started_at: str | None = None
    completed_at: str | None = None
    heartbeat_at: str | None = None
    launched_at: str | None = None
    cancel_requested_at: str | None = None
    error: str | None = None
    exit_code: int | None = None
    progress: Progress = Field(default_factory=Progress)
    instance_id: str | None = None
    instance_type: str | None = None
    capacity: str | None = None  # spot or on-demand: what the launcher got for the current attempt
    attempt: int = 0
    # Launches that found no EC2 capacity anywhere; the launcher fails the job at its limit.
    capacity_failures: int = 0
    # The attempts the control plane allows this job (recorded with each launch).
    max_attempts: int | None = None
    # Earlier attempts lost to the infrastructure, with their reasons (jobs.attempts).
    lost_attempts: list[LostAttempt] = Field(default_factory=list)
    # init: per target database, what earlier attempts finished (jobs.attempts).
    checkpoint: dict[str, DatabaseCheckpoint] = Field(default_factory=dict)
    # The last worker report applied to the item (jobs.reports).
    reported: ReportMark | None = None
    idempotency_key: str | None = None
    request_fingerprint: str | None = None
    expires_at: int  # epoch seconds; the table's TTL attribute

    @property
    def project(self) -> ProjectTarget | None:
        """The SerenDB project target, when the client picked one."""
        if self.target_project_id is None or self.target_branch_id is None:
            return None
        return ProjectTarget(
            project_id=self.target_project_id,
            branch_id=self.target_branch_id,
            databases=list(self.target_databases or []),
        )

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def retrying(self) -> bool:
        """Waiting for a new instance after an attempt was lost (its worker had started)."""
        return self.started_at is not None and self.status in RETRY_STATUSES

    def is_expired(self, now_epoch: int) -> bool:
        return self.expires_at <= now_epoch

    def to_item(self) -> dict[str, Any]:
        item = self.model_dump(mode="json", exclude_none=True)
        if self.is_active:
            item[ACTIVE_INDEX_KEY] = self.status.value
        item[OWNER_CREATED_ATTRIBUTE] = owner_created(self.owner, self.created_at)
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Job:
        return cls.model_validate(from_dynamo(item))


# The sparse index of unfinished jobs is keyed on this attribute, present only while active.
ACTIVE_INDEX_KEY = "active_status"
TTL_ATTRIBUTE = "expires_at"
# The status index's sort key, "<owner>#<created_at>", written once with the job: an owner's
# jobs in one status are one key range of it, newest last ('#' is not in an owner's alphabet).
OWNER_CREATED_ATTRIBUTE = "owner_created"


def owner_created(owner: str, created_at: str) -> str:
    return f"{owner}#{created_at}"


CREDENTIALS_ATTRIBUTE = "credentials"
# The credentials re-encrypted by the launcher for the one instance it started for the job.
INSTANCE_CREDENTIALS_ATTRIBUTE = "instance_credentials"
# Removed when the job ends: what only a running job needs of the request. The request
# fingerprint stays (a MAC under a key only the API may use): a late reuse of the job's
# Idempotency-Key for another request is refused by it.
ENDED_JOB_REMOVES = (CREDENTIALS_ATTRIBUTE, INSTANCE_CREDENTIALS_ATTRIBUTE)
