"""Data access for the owner ledger: one item per key owner in the jobs table, holding the
set of that owner's unfinished jobs.

The per-owner cap is a condition on the write that adds a job to its owner's set, made in
the same transaction as the job's creation (`JobStore.create`): concurrent submits cannot
all find room, as they could by counting an eventually consistent index first. A set, so
giving a place back twice changes nothing; the place is given back when the job ends
(`control_plane.settle`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jobs import aws
from jobs.record import Job

OWNER_ITEM_PREFIX = "control#owner#"
UNFINISHED = "unfinished"


class OwnerCapReached(Exception):
    """The owner already has as many unfinished jobs as the cap allows."""


def holds_place(job: Job | None, now_epoch: int) -> bool:
    """A job holds its place among its owner's unfinished jobs from its creation until it
    ends (an expired or missing job holds none)."""
    return job is not None and job.is_active and not job.is_expired(now_epoch)


def owner_item_id(owner: str) -> str:
    return OWNER_ITEM_PREFIX + owner


def take_place(table_name: str, owner: str, job_id: str, cap: int) -> dict[str, Any]:
    """The transaction step (as the table resource's client takes it) that adds `job_id`
    to its owner's unfinished jobs, on condition that the owner has fewer than `cap`."""
    return {
        "Update": {
            "TableName": table_name,
            "Key": {"job_id": owner_item_id(owner)},
            "UpdateExpression": "ADD #u :job",
            "ConditionExpression": "attribute_not_exists(#u) OR size(#u) < :cap",
            "ExpressionAttributeNames": {"#u": UNFINISHED},
            "ExpressionAttributeValues": {":job": {job_id}, ":cap": cap},
        }
    }


class OwnerLedger:
    def __init__(self, table_name: str, table: Any | None = None) -> None:
        self._table = table if table is not None else aws.table(table_name)

    def unfinished(self, owner: str) -> set[str]:
        item = self._table.get_item(Key={"job_id": owner_item_id(owner)}, ConsistentRead=True).get("Item")
        return set(item.get(UNFINISHED, set())) if item else set()

    def release(self, owner: str, job_ids: Iterable[str]) -> None:
        """Give back the places of `job_ids` (a no-op for those that hold none)."""
        ids = set(job_ids)
        if ids:
            self._table.update_item(
                Key={"job_id": owner_item_id(owner)},
                UpdateExpression="DELETE #u :jobs",
                ExpressionAttributeNames={"#u": UNFINISHED},
                ExpressionAttributeValues={":jobs": ids},
            )
