"""Accepting a job: policy checks, encryption, and one transaction that creates the job
and takes its place under the per-owner cap (`jobs.owners`).

Idempotency is built into that write instead of a separate idempotency table: with an
`Idempotency-Key` the job id is derived from (owner, key), so a retry aims at the same
item and the conditional create cannot make a second job. The stored request fingerprint
(a keyed MAC, kept for the job's life) tells a genuine retry (same job back, also after the
job ended) from a reuse of the key for another request (422, at any time).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus

from jobs import clock
from jobs.crypto import Credentials, CredentialsTooLong
from jobs.owners import OwnerCapReached, holds_place
from jobs.policy import HostNotAllowed
from jobs.record import Job
from jobs.spec import JobSpec
from jobs.states import JobStatus
from jobs.store import CreateResult
from jobs.urls import parse_url
from services.api.errors import ApiError, bad_request
from services.api.resources import Resources
from services.api.settings import Settings

# Fixed forever: changing it would give retries of old requests new job ids.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f0f4b8e-3c57-4d0e-9a51-2b7f6c1d9e42")
MAX_IDEMPOTENCY_KEY_LENGTH = 255


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False: an idempotent retry answered with the job it created before


def job_id_for(owner: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, owner + "\n" + idempotency_key))


def canonical_request(spec: JobSpec) -> bytes:
    """The whole request, URLs included, in one stable form: only ever stored as a keyed MAC."""
    return json.dumps(spec.fingerprint_fields(), sort_keys=True, separators=(",", ":")).encode()


def submit_job(res: Resources, owner: str, spec: JobSpec, idempotency_key: str | None) -> Submission:
    if idempotency_key is not None:
        idempotency_key = idempotency_key.strip()
        if not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH or not idempotency_key.isprintable():
            raise bad_request(
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters"
            )
    _check_limits(spec, res.settings)
    source = parse_url(spec.source_url, field="source_url")
    target = parse_url(spec.target_url, field="target_url")
    policy = res.settings.connection_policy
    try:
        policy.check_host(source.host, role="source")
        policy.check_host(target.host, role="target")
    except HostNotAllowed as exc:
        raise bad_request(str(exc), reason="host_policy") from exc

    job_id = job_id_for(owner, idempotency_key)
    fingerprint = res.request_mac.fingerprint(canonical_request(spec))
    try:
        ciphertext = res.cipher.encrypt(
            job_id,
            Credentials(
                source_url=spec.source_url, target_url=spec.target_url, seren_api_key=spec.seren_api_key
            ),
        )
    except CredentialsTooLong as exc:
        raise bad_request(str(exc)) from exc

    now = clock.now()
    created_at = clock.iso(now)
    job = Job(
        job_id=job_id,
        owner=owner,
        trace_id=str(uuid.uuid4()),
        schema_version=spec.schema_version,
        command=spec.command.value,
        status=JobStatus.PENDING,
        filter=spec.filter,
        options=spec.options,
        source=source.redacted,
        target=target.redacted,
        target_project_id=spec.target_project_id,
        target_branch_id=spec.target_branch_id,
        target_databases=spec.target_databases,
        created_at=created_at,
        updated_at=created_at,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        expires_at=clock.epoch(now + timedelta(days=res.settings.job_retention_days)),
    )
    result = _create_within_cap(res, job, ciphertext)
    if result.created:
        return Submission(job=result.job, created=True)
    return _replay(result.job, owner, fingerprint, idempotency_key)


def _create_within_cap(res: Resources, job: Job, ciphertext: bytes) -> CreateResult:
    """Create the job if its owner has room (an idempotent retry gets its job back, room or
    not). At the cap, the places of jobs that have ended are given back first: the launcher
    gives them back as each job ends, and a place must not stay taken when it could not."""
    cap = res.settings.max_unfinished_jobs_per_owner
    for last_try in (False, True):
        try:
            return res.jobs.create(job, ciphertext, owner_cap=cap)
        except OwnerCapReached:
            if last_try or not _give_back_ended_places(res, job.owner):
                break
    raise ApiError(
        HTTPStatus.TOO_MANY_REQUESTS,
        f"Too many unfinished jobs: the limit is {cap} per owner; wait for one to finish",
        reason="owner_cap",
    )


def _give_back_ended_places(res: Resources, owner: str) -> bool:
    now_epoch = clock.epoch(clock.now())
    ended = [
        job_id
        for job_id in res.owners.unfinished(owner)
        if not holds_place(res.jobs.get(job_id, include_expired=True), now_epoch)
    ]
    res.owners.release(owner, ended)
    return bool(ended)


def _check_limits(spec: JobSpec, settings: Settings) -> None:
    """The operator's limits on what one job may ask for."""
    longest = settings.max_job_runtime_seconds
    if spec.options.asks_beyond(longest):
        raise bad_request(
            f"options.job_timeout_seconds: at most {longest} seconds here; 0 asks for that maximum",
            reason="limit",
        )
    largest = settings.max_estimated_size_bytes
    if (spec.options.estimated_size_bytes or 0) > largest:
        raise bad_request(
            f"options.estimated_size_bytes: at most {largest} bytes here (it chooses the worker's size)",
            reason="limit",
        )


def _replay(existing: Job, owner: str, fingerprint: str, idempotency_key: str | None) -> Submission:
    # A job that ended before fingerprints were kept has none: it cannot be shown to be the
    # same request, so it is not given back for one.
    if existing.owner != owner or existing.request_fingerprint != fingerprint:
        raise ApiError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f"Idempotency-Key {idempotency_key!r} was already used with a different request; "
            "send this one with another key",
            reason="idempotency_conflict",
        )
    return Submission(job=existing, created=False)
