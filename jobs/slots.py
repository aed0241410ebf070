"""Data access for the worker-slot ledger: one item of the jobs table holding the set of
jobs that own a slot.

A set rather than a counter: taking a slot twice for the same job, or giving it back
twice, changes nothing, so duplicate and reordered events cannot leak or double-count.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jobs import aws
from jobs.dynamo import conditional
from jobs.record import TTL_ATTRIBUTE
from jobs.tables import SLOTS_ITEM_ID

HOLDERS = "holders"


class SlotLedger:
    def __init__(self, table_name: str, table: Any | None = None) -> None:
        self._table = table if table is not None else aws.table(table_name)

    def acquire(self, job_id: str, max_slots: int) -> bool:
        """Take a slot for `job_id` if one is free or it already holds one."""
        return conditional(
            lambda: self._table.update_item(
                Key={"job_id": SLOTS_ITEM_ID},
                UpdateExpression="ADD #h :job",
                ConditionExpression="attribute_not_exists(#h) OR contains(#h, :id) OR size(#h) < :max",
                ExpressionAttributeNames={"#h": HOLDERS},
                ExpressionAttributeValues={":job": {job_id}, ":id": job_id, ":max": max_slots},
            )
        ).ok

    def release(self, job_id: str) -> None:
        """Give `job_id`'s slot back (a no-op if it holds none)."""
        self.release_all([job_id])

    def holders(self) -> set[str]:
        item = self._table.get_item(Key={"job_id": SLOTS_ITEM_ID}, ConsistentRead=True).get("Item")
        return set(item.get(HOLDERS, set())) if item else set()

    def release_all(self, job_ids: Iterable[str]) -> None:
        self._change("DELETE", job_ids)

    def restore(self, job_ids: Iterable[str]) -> None:
        """Record slots that jobs already use (an instance is up) whatever the limit: the
        ledger must match reality before it can keep the limit."""
        self._change("ADD", job_ids)

    def _change(self, operation: str, job_ids: Iterable[str]) -> None:
        ids = set(job_ids)
        if ids:
            self._table.update_item(
                Key={"job_id": SLOTS_ITEM_ID},
                UpdateExpression=f"{operation} #h :jobs",
                ExpressionAttributeNames={"#h": HOLDERS},
                ExpressionAttributeValues={":jobs": ids},
            )

LAUNCH_CLAIM_PREFIX = "control#launch#"
# Claims outlive any launch by far; TTL removes them (they have no status, so no reader sees them).
CLAIM_RETENTION_SECONDS = 7 * 24 * 3600


class LaunchClaims:
    """One item per job attempt saying which launcher may call RunInstances for it.

    EC2's ClientToken already makes RunInstances idempotent per attempt; the claim makes
    that hold where ClientToken is not honoured (moto) and keeps a second launcher from
    even trying. A claim is a lease: a launcher that died mid-launch is taken over once
    the lease has passed, and the successor looks for the instance it may have left.
    """

    def __init__(self, table_name: str, table: Any | None = None) -> None:
        self._table = table if table is not None else aws.table(table_name)

    def claim(self, job_id: str, attempt: int, holder: str, *, now_epoch: int, lease_seconds: int) -> bool:
        """Take the claim for this attempt if nobody holds it or its lease has passed."""
        return conditional(
            lambda: self._table.put_item(
                Item={
                    "job_id": _claim_key(job_id, attempt),
                    "holder": holder,
                    "lease_until": now_epoch + lease_seconds,
                    TTL_ATTRIBUTE: now_epoch + CLAIM_RETENTION_SECONDS,
                },
                ConditionExpression="attribute_not_exists(job_id) OR lease_until < :now OR holder = :me",
                ExpressionAttributeValues={":now": now_epoch, ":me": holder},
            )
        ).ok

    def release(self, job_id: str, attempt: int, holder: str) -> None:
        """Give up a claim this holder took (after a failure that a retry may overcome)."""
        conditional(
            lambda: self._table.delete_item(
                Key={"job_id": _claim_key(job_id, attempt)},
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": holder},
            )
        )


def _claim_key(job_id: str, attempt: int) -> str:
    return f"{LAUNCH_CLAIM_PREFIX}{job_id}#{attempt}"
