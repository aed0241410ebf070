"""The job status machine as data. No AWS imports: the rules are testable on their own."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.CANCELLED}
)
ACTIVE: frozenset[JobStatus] = frozenset(set(JobStatus) - TERMINAL)
# Where a job waits for the instance of its next attempt.
RETRY_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.PROVISIONING})

# Which status may follow which. A terminal status has no successors: it is never left.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset(
        {JobStatus.QUEUED, JobStatus.PROVISIONING, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.QUEUED: frozenset({JobStatus.PROVISIONING, JobStatus.FAILED, JobStatus.CANCELLED}),
    # provisioning -> provisioning is a relaunch (attempt + 1) by the reaper.
    JobStatus.PROVISIONING: frozenset(
        {JobStatus.PROVISIONING, JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    # running -> provisioning: the attempt was lost to the infrastructure; the next one starts.
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.PROVISIONING,
            JobStatus.CANCELLING,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.TIMEOUT,
        }
    ),
    JobStatus.CANCELLING: frozenset(
        {JobStatus.CANCELLED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMEOUT}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.TIMEOUT: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus, new: JobStatus) -> bool:
    return new in TRANSITIONS[current]


def sources_of(new: JobStatus) -> frozenset[JobStatus]:
    """Every status a write to `new` may leave: what its condition expression names."""
    return frozenset(s for s, successors in TRANSITIONS.items() if new in successors)


# Clients of schema 1.0 know four words and stop polling only on the last two.
V1_STATUS: dict[JobStatus, str] = {
    JobStatus.PENDING: "provisioning",
    JobStatus.QUEUED: "provisioning",
    JobStatus.PROVISIONING: "provisioning",
    JobStatus.RUNNING: "running",
    JobStatus.CANCELLING: "running",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.TIMEOUT: "failed",
    JobStatus.CANCELLED: "failed",
}

_V1_ERROR_FOR_HIDDEN_OUTCOME: dict[JobStatus, str] = {
    JobStatus.TIMEOUT: "Job timed out",
    JobStatus.CANCELLED: "Job was cancelled",
}


def status_for_client(
    status: JobStatus, schema_version: str, error: str | None, *, retrying: bool = False
) -> tuple[str, str | None]:
    """The (status, error) pair a client of `schema_version` is shown.

    A 1.0 client learns of `timeout` and `cancelled` as `failed`, with the error saying which,
    and sees a job that waits for a new instance after a lost one (`retrying`) as `running`.
    """
    if schema_version != "1.0":
        return status.value, error
    if retrying:
        return V1_STATUS[JobStatus.RUNNING], error
    hidden = _V1_ERROR_FOR_HIDDEN_OUTCOME.get(status)
    if hidden is not None:
        error = f"{hidden}: {error}" if error else hidden
    return V1_STATUS[status], error
