"""Reading jobs: one job, the caller's list, and a job's worker log lines.

Every read is scoped to the caller: another owner's job is indistinguishable from one
that does not exist.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from jobs import job_logs
from jobs.record import OWNER_CREATED_ATTRIBUTE, Job, owner_created
from jobs.states import JobStatus
from services.api.errors import bad_request, job_not_found
from services.api.resources import Resources

DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100
DEFAULT_LOG_LINES = 100
MAX_LOG_LINES = 1000
MAX_TOKEN_LENGTH = 2048
# Lines shown with a failed job in GET /jobs/{id} (newer clients print them).
FAILURE_LOG_LINES = 50
FAILED_STATUSES = frozenset({JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.CANCELLED})
# The keys of the indexes a list reads: the only attributes a next_token may carry.
_OWNER_PAGE_KEY_FIELDS = frozenset({"job_id", "owner", "created_at"})
_STATUS_PAGE_KEY_FIELDS = frozenset({"job_id", "status", OWNER_CREATED_ATTRIBUTE})


@dataclass(frozen=True)
class JobList:
    jobs: list[Job]
    next_token: str | None


def owned_job(res: Resources, owner: str, job_id: str) -> Job:
    # The owner is read alone first: another owner's job is refused before any of it is
    # read or parsed, with the same work as a job that does not exist (no timing difference).
    if not _is_uuid(job_id) or res.jobs.owner_of(job_id) != owner:
        raise job_not_found()
    job = res.jobs.get(job_id)
    if job is None or job.owner != owner:
        raise job_not_found()
    return job


def failure_logs(res: Resources, job: Job) -> list[str] | None:
    """The last log lines of a job that failed; None for any other job."""
    if job.status not in FAILED_STATUSES:
        return None
    try:
        return job_logs.read_lines(*_log_location(res, job), FAILURE_LOG_LINES)
    except ClientError:
        return []  # the status answer matters more than its log excerpt


def log_lines(res: Resources, job: Job, limit: int) -> list[str]:
    return job_logs.read_lines(*_log_location(res, job), limit)


def list_jobs(
    res: Resources, owner: str, *, limit: int, status: JobStatus | None, next_token: str | None
) -> JobList:
    start_key = _decode_token(next_token, owner, status) if next_token else None
    page = res.jobs.list_for_owner(owner, limit=limit, status=status, start_key=start_key)
    return JobList(jobs=page.jobs, next_token=_encode_token(page.next_key) if page.next_key else None)


def _log_location(res: Resources, job: Job) -> tuple[str, str]:
    """Derived from the job id, never read from the item (a worker may write the item)."""
    return job_logs.job_log_group(res.settings.worker_log_group, job.job_id), job.job_id


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def _encode_token(key: dict[str, Any]) -> str:
    raw = json.dumps({k: str(v) for k, v in key.items()}, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str, owner: str, status: JobStatus | None) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        key = None
    # A token only positions the caller inside their own list (in the status it was
    # given for); one built by hand to point into another owner's jobs is refused.
    if not (
        isinstance(key, dict)
        and all(isinstance(v, str) for v in key.values())
        and _positions_in(key, owner, status)
    ):
        raise bad_request("next_token is invalid")
    return key


def _positions_in(key: dict[str, str], owner: str, status: JobStatus | None) -> bool:
    if status is None:
        return set(key) == _OWNER_PAGE_KEY_FIELDS and key["owner"] == owner
    return (
        set(key) == _STATUS_PAGE_KEY_FIELDS
        and key["status"] == status.value
        and key[OWNER_CREATED_ATTRIBUTE].startswith(owner_created(owner, ""))
    )
