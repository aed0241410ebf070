"""Data access for the jobs table. Every status change is a conditional write that names
the statuses it leaves; a lost race comes back as a result, never as an exception."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr, ConditionBase, Key
from botocore.exceptions import ClientError
from pydantic import ValidationError

from jobs import aws, clock
from jobs.dynamo import CONDITION_FAILED_REASON, TRANSACTION_CANCELED, all_equal, conditional, error_code
from jobs.dynamo_values import to_dynamo
from jobs.owners import OwnerCapReached, take_place
from jobs.record import (
    ACTIVE_INDEX_KEY,
    CREDENTIALS_ATTRIBUTE,
    ENDED_JOB_REMOVES,
    INSTANCE_CREDENTIALS_ATTRIBUTE,
    OWNER_CREATED_ATTRIBUTE,
    TTL_ATTRIBUTE,
    Job,
    owner_created,
)
from jobs.states import ACTIVE, JobStatus, can_transition
from jobs.tables import ACTIVE_JOBS_INDEX, OWNER_JOBS_INDEX, STATUS_JOBS_INDEX

logger = logging.getLogger(__name__)
# Transactions of one owner's submits that touched its ledger item at once.
CONFLICT_RETRIES = 5
# The log line every unreadable item leaves: a metric filter counts it and alarms on it.
UNREADABLE_ITEM = "unreadable job item skipped"


def readable(item: dict[str, Any]) -> Job | None:
    """The job an item holds, or None (logged) when it does not parse: one forged or damaged
    item must not fail a whole listing, a reaper run or a launcher batch."""
    try:
        return Job.from_item(item)
    except (ValidationError, TypeError, ValueError) as exc:
        job_id = item.get("job_id")
        logger.error(
            UNREADABLE_ITEM,
            extra={"job_id": job_id if isinstance(job_id, str) else None, "errors": _field_names(exc)},
        )
        return None


def _field_names(exc: Exception) -> list[str]:
    """Which fields failed, never their values (an item is not trusted to hold no secret)."""
    if isinstance(exc, ValidationError):
        return sorted({".".join(str(p) for p in error["loc"]) for error in exc.errors()})[:10]
    return [type(exc).__name__]


@dataclass(frozen=True)
class WriteResult:
    """Whether a conditional write took effect; `job` is the item after it, or as it was
    when the condition failed (None when the item does not exist)."""

    ok: bool
    job: Job | None


@dataclass(frozen=True)
class CreateResult:
    created: bool
    job: Job  # the new job, or the one already stored under that id


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_key: dict[str, Any] | None


class JobStore:
    def __init__(self, table_name: str, table: Any | None = None) -> None:
        self.table_name = table_name
        self._table = table if table is not None else aws.table(table_name)

    # -- create and read -------------------------------------------------------------

    def create(self, job: Job, credentials_ciphertext: bytes, *, owner_cap: int) -> CreateResult:
        """Create the job and take its place among its owner's unfinished jobs, in one
        transaction; an existing job under that id is returned instead (an idempotent
        retry takes no second place). Raises OwnerCapReached when the owner has no room."""
        item = to_dynamo(job.to_item())
        item[CREDENTIALS_ATTRIBUTE] = credentials_ciphertext
        steps = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(job_id)",
                }
            },
            take_place(self.table_name, job.owner, job.job_id, owner_cap),
        ]
        attempt = 0
        while True:
            attempt += 1
            try:
                self._table.meta.client.transact_write_items(TransactItems=steps)
                return CreateResult(created=True, job=job)
            except ClientError as exc:
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if error_code(exc) != TRANSACTION_CANCELED or not reasons:
                    raise
                if reasons[0] == CONDITION_FAILED_REASON:
                    existing = self.get(job.job_id, include_expired=True)
                    if existing is None:  # deleted between the two calls: nothing to return
                        raise RuntimeError(
                            f"job {job.job_id} was deleted while its creation was refused"
                        ) from exc
                    return CreateResult(created=False, job=existing)
                if reasons[1] == CONDITION_FAILED_REASON:
                    raise OwnerCapReached(job.owner) from exc
                # Another submit of the same owner wrote its ledger item at the same moment.
                if attempt >= CONFLICT_RETRIES:
                    raise
                time.sleep(random.uniform(0, 0.05 * attempt))  # noqa: S311 - jitter, not a secret

    def get(self, job_id: str, *, include_expired: bool = False) -> Job | None:
        item = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        if item is None or "status" not in item:
            return None
        job = readable(item)
        if job is None:
            return None
        if not include_expired and job.is_expired(clock.epoch(clock.now())):
            return None  # TTL deletion lags by days: an expired item is already gone
        return job

    def owner_of(self, job_id: str) -> str | None:
        """Only the owner of the item under `job_id` (None when there is none): an answer as
        small whoever owns the job, so a caller can refuse another owner's job having done
        the same work as for no job."""
        item = self._table.get_item(
            Key={"job_id": job_id},
            ConsistentRead=True,
            ProjectionExpression="#o",
            ExpressionAttributeNames={"#o": "owner"},
        ).get("Item")
        owner = (item or {}).get("owner")
        return owner if isinstance(owner, str) else None

    def report_item(self, key: str) -> dict[str, Any] | None:
        """A worker's report item (`jobs.reports`) as stored, read consistently."""
        item: dict[str, Any] | None = self._table.get_item(Key={"job_id": key}, ConsistentRead=True).get(
            "Item"
        )
        return item

    def get_credentials(self, job_id: str, *, attribute: str = CREDENTIALS_ATTRIBUTE) -> bytes | None:
        """The API's ciphertext, or (`INSTANCE_CREDENTIALS_ATTRIBUTE`) the one bound to the
        job's instance."""
        item = self._table.get_item(
            Key={"job_id": job_id},
            ConsistentRead=True,
            ProjectionExpression="#c",
            ExpressionAttributeNames={"#c": attribute},
        ).get("Item")
        if not item or attribute not in item:
            return None
        value = item[attribute]
        return bytes(value.value if hasattr(value, "value") else value)

    # -- status changes ---------------------------------------------------------------

    def transition(
        self,
        job_id: str,
        from_statuses: Iterable[JobStatus],
        to_status: JobStatus,
        *,
        set_fields: dict[str, Any] | None = None,
        remove_fields: Iterable[str] = (),
        only_if: dict[str, Any] | None = None,
        also: ConditionBase | None = None,
    ) -> WriteResult:
        """Move the job from one of `from_statuses` to `to_status`, atomically.

        `only_if` adds equality conditions (e.g. {"instance_id": "i-1", "attempt": 2}) so
        a writer acts only on the job as it last saw it, `also` any other condition.
        Reaching a terminal status removes the credentials and the job's entries in the
        sparse active indexes.
        """
        sources = sorted(set(from_statuses))
        illegal = [s for s in sources if not can_transition(s, to_status)]
        if illegal:
            raise ValueError(f"{', '.join(illegal)} -> {to_status} is not a legal transition")
        now = clock.now_iso()
        fields: dict[str, Any] = {"status": to_status.value, "updated_at": now, **(set_fields or {})}
        removals = set(remove_fields)
        if to_status in ACTIVE:
            fields[ACTIVE_INDEX_KEY] = to_status.value
        else:
            fields.setdefault("completed_at", now)
            removals |= {ACTIVE_INDEX_KEY, *ENDED_JOB_REMOVES}
        condition = all_equal(Attr("status").is_in([s.value for s in sources]), only_if)
        return self._update(job_id, fields, removals, condition if also is None else condition & also)

    def update_active(
        self,
        job_id: str,
        set_fields: dict[str, Any],
        *,
        statuses: Iterable[JobStatus] = (JobStatus.RUNNING, JobStatus.CANCELLING),
        only_if: dict[str, Any] | None = None,
        also: ConditionBase | None = None,
    ) -> WriteResult:
        """Heartbeat and progress writes: only while the job is still in `statuses`."""
        condition = all_equal(Attr("status").is_in([s.value for s in statuses]), only_if)
        fields = {"updated_at": clock.now_iso(), **set_fields}
        return self._update(job_id, fields, set(), condition if also is None else condition & also)

    def wipe_credentials(self, job_id: str, *, only_if: dict[str, Any] | None = None) -> None:
        """Remove the ciphertexts whatever the status (idempotent; used after a job ends).

        `only_if` adds equality conditions (a worker wipes only a job still assigned to it)."""
        conditional(
            lambda: self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="REMOVE #c, #i",
                ConditionExpression=all_equal(Attr("job_id").exists(), only_if),
                ExpressionAttributeNames={"#c": CREDENTIALS_ATTRIBUTE, "#i": INSTANCE_CREDENTIALS_ATTRIBUTE},
            )
        )

    def _update(self, job_id: str, fields: dict[str, Any], removals: set[str], condition: Any) -> WriteResult:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        assignments = []
        for index, (name, value) in enumerate(sorted(fields.items())):
            names[f"#s{index}"] = name
            values[f":s{index}"] = value
            assignments.append(f"#s{index} = :s{index}")
        expression = "SET " + ", ".join(assignments)
        if removals:
            for index, name in enumerate(sorted(removals)):
                names[f"#r{index}"] = name
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removals)))
        result = conditional(
            lambda: self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression=expression,
                ConditionExpression=condition & Attr("job_id").exists(),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_dynamo(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        )
        if not result.ok:
            old = result.old
            # As it was: a damaged item is logged and counted, never raised (a stream record
            # naming it would fail its batch on every retry).
            return WriteResult(ok=False, job=readable(old) if old and "status" in old else None)
        return WriteResult(ok=True, job=Job.from_item(result.answer["Attributes"]))

    # -- queries ----------------------------------------------------------------------

    def active_jobs(self, status: JobStatus) -> Iterator[Job]:
        """Unfinished jobs in `status`, oldest first, from the sparse active index."""
        for page in self._query_pages(
            IndexName=ACTIVE_JOBS_INDEX, KeyConditionExpression=Key(ACTIVE_INDEX_KEY).eq(status.value)
        ):
            yield from page

    def list_for_owner(
        self,
        owner: str,
        *,
        limit: int,
        status: JobStatus | None = None,
        start_key: dict[str, Any] | None = None,
    ) -> Page:
        """The owner's jobs, newest first: one query that reads at most `limit` items, so a
        request costs the same whatever the owner's history. Expired items are left out,
        so a page may hold fewer than `limit` jobs and still have a next one."""
        kwargs: dict[str, Any] = {
            "ScanIndexForward": False,
            "FilterExpression": Attr(TTL_ATTRIBUTE).gt(clock.epoch(clock.now())),
            "Limit": limit,
        }
        if status is None:
            kwargs |= {"IndexName": OWNER_JOBS_INDEX, "KeyConditionExpression": Key("owner").eq(owner)}
        else:
            kwargs |= {
                "IndexName": STATUS_JOBS_INDEX,
                "KeyConditionExpression": Key("status").eq(status.value)
                & Key(OWNER_CREATED_ATTRIBUTE).begins_with(owner_created(owner, "")),
            }
        if start_key:
            kwargs["ExclusiveStartKey"] = start_key
        answer = self._table.query(**kwargs)
        jobs = [job for job in map(readable, answer.get("Items", [])) if job is not None]
        return Page(jobs=jobs, next_key=answer.get("LastEvaluatedKey"))

    def delete_expired(self, job_id: str, now_epoch: int) -> bool:
        """Delete an item whose TTL has passed (TTL deletion lags by days). False if it
        was already gone or is not expired after all."""
        return conditional(
            lambda: self._table.delete_item(
                Key={"job_id": job_id},
                ConditionExpression=Attr(TTL_ATTRIBUTE).lte(now_epoch),
            )
        ).ok

    def _query_pages(self, **kwargs: Any) -> Iterator[list[Job]]:
        while True:
            answer = self._table.query(**kwargs)
            yield [job for job in map(readable, answer.get("Items", [])) if job is not None]
            if "LastEvaluatedKey" not in answer:
                return
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
