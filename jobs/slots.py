"""Data access for the worker-slot ledger: one item of the jobs table holding the set of
jobs that own a slot.

A set rather than a counter: taking a slot twice for the same job, or giving it back
twice, changes nothing, so duplicate and reordered events cannot leak or double-count.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from jobs import aws
from jobs.tables import SLOTS_ITEM_ID

HOLDERS = "holders"


class SlotLedger:
    def __init__(self, table_name: str, table: Any | None = None) -> None:
        self._table = table if table is not None else aws.table(table_name)

    def acquire(self, job_id: str, max_slots: int) -> bool:
        """Take a slot for `job_id` if one is free or it already holds one."""
        try:
            self._table.update_item(
                Key={"job_id": SLOTS_ITEM_ID},
                UpdateExpression="ADD #h :job",
                ConditionExpression="attribute_not_exists(#h) OR contains(#h, :id) OR size(#h) < :max",
                ExpressionAttributeNames={"#h": HOLDERS},
                ExpressionAttributeValues={":job": {job_id}, ":id": job_id, ":max": max_slots},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(self, job_id: str) -> None:
        """Give `job_id`'s slot back (a no-op if it holds none)."""
        self._table.update_item(
            Key={"job_id": SLOTS_ITEM_ID},
            UpdateExpression="DELETE #h :job",
            ExpressionAttributeNames={"#h": HOLDERS},
            ExpressionAttributeValues={":job": {job_id}},
        )

    def holders(self) -> set[str]:
        item = self._table.get_item(Key={"job_id": SLOTS_ITEM_ID}, ConsistentRead=True).get("Item")
        return set(item.get(HOLDERS, set())) if item else set()

    def release_all(self, job_ids: Iterable[str]) -> None:
        ids = set(job_ids)
        if ids:
            self._table.update_item(
                Key={"job_id": SLOTS_ITEM_ID},
                UpdateExpression="DELETE #h :jobs",
                ExpressionAttributeNames={"#h": HOLDERS},
                ExpressionAttributeValues={":jobs": ids},
            )
