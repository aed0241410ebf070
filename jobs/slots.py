"""Data access for the worker-slot ledger: one item of the jobs table holding the set of
jobs that own a slot, and, per owner, the set of that owner's jobs among them.

Sets rather than counters: taking a slot twice for the same job, or giving it back twice,
changes nothing, so duplicate and reordered events cannot leak or double-count. Both limits
(all slots, and one owner's) are conditions on the one write that takes a slot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from jobs import aws
from jobs.dynamo import TRANSACTION_CANCELED, conditional, error_code
from jobs.record import TTL_ATTRIBUTE, Job
from jobs.tables import SLOTS_ITEM_ID

HOLDERS = "holders"
# One attribute per owner holding slots: `owner#<owner>`, the set of its jobs that hold one.
OWNER_HOLDERS_PREFIX = "owner#"


class Grant(Enum):
    """What asking for a slot gave: a slot, or why not."""

    TAKEN = "taken"
    FULL = "full"  # every slot is held
    OWNER_AT_LIMIT = "owner_at_limit"  # the job's owner holds as many as it may

    def __bool__(self) -> bool:
        return self is Grant.TAKEN


@dataclass(frozen=True)
class OwnerLimit:
    owner: str
    max_slots: int


class SlotLedger:
    def __init__(self, table_name: str, table: Any | None = None) -> None:
        self._table = table if table is not None else aws.table(table_name)

    def acquire(self, job_id: str, max_slots: int, owner: OwnerLimit | None = None) -> Grant:
        """Take a slot for `job_id` if one is free (and its owner holds fewer than its
        limit), or if it already holds one."""
        names = {"#h": HOLDERS}
        values: dict[str, Any] = {":job": {job_id}, ":id": job_id, ":max": max_slots}
        update = "ADD #h :job"
        room = "attribute_not_exists(#h) OR size(#h) < :max"
        if owner is not None:
            names["#o"] = OWNER_HOLDERS_PREFIX + owner.owner
            values[":owner_max"] = owner.max_slots
            update += ", #o :job"
            room = f"({room}) AND (attribute_not_exists(#o) OR size(#o) < :owner_max)"
        result = conditional(
            lambda: self._table.update_item(
                Key={"job_id": SLOTS_ITEM_ID},
                UpdateExpression=update,
                ConditionExpression=f"contains(#h, :id) OR ({room})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        )
        if result.ok:
            return Grant.TAKEN
        item = result.old if result.old is not None else self._item()
        return Grant.FULL if len(item.get(HOLDERS, ())) >= max_slots else Grant.OWNER_AT_LIMIT

    def has_room(self, max_slots: int, owner: OwnerLimit | None = None) -> bool:
        """Whether a job holding no slot would be given one now (as `acquire` decides)."""
        item = self._item()
        if len(item.get(HOLDERS, ())) >= max_slots:
            return False
        return owner is None or len(item.get(OWNER_HOLDERS_PREFIX + owner.owner, ())) < owner.max_slots

    def release(self, job_id: str) -> None:
        """Give `job_id`'s slot back (a no-op if it holds none)."""
        self.release_all([job_id])

    def holders(self) -> set[str]:
        return set(self._item().get(HOLDERS, set()))

    def release_all(self, job_ids: Iterable[str]) -> None:
        """Give the slots of `job_ids` back, from the ledger and from their owners' sets."""
        ids = set(job_ids)
        if not ids:
            return
        held_by_owner = {
            name: set(value) & ids
            for name, value in self._item().items()
            if name.startswith(OWNER_HOLDERS_PREFIX) and set(value) & ids
        }
        self._change("DELETE", {HOLDERS: ids, **held_by_owner})

    def release_unless_launching(self, job: Job, *, now_epoch: int) -> bool:
        """Give back the slot of a waiting `job` unless a launcher holds the claim of its next
        attempt, in one transaction: a launcher takes that claim before the slot
        (`control_plane.admission`), so a slot it takes is never released under it. Whether
        it was given back."""
        owners = OWNER_HOLDERS_PREFIX + job.owner
        held_by_owner = {owners: {job.job_id}} if owners in self._item() else {}
        steps = [
            {
                "Update": {
                    "TableName": self._table.name,
                    **self._change_request("DELETE", {HOLDERS: {job.job_id}, **held_by_owner}),
                }
            },
            {
                "ConditionCheck": {
                    "TableName": self._table.name,
                    "Key": {"job_id": _claim_key(job.job_id, job.attempt + 1)},
                    "ConditionExpression": "attribute_not_exists(job_id) OR lease_until < :now",
                    "ExpressionAttributeValues": {":now": now_epoch},
                }
            },
        ]
        try:
            self._table.meta.client.transact_write_items(TransactItems=steps)
        except ClientError as exc:
            if error_code(exc) != TRANSACTION_CANCELED:
                raise
            return False  # a launcher holds the claim, or another write got there first
        return True

    def restore(self, jobs: Iterable[Job]) -> None:
        """Record slots that jobs already use (an instance is up) whatever the limits: the
        ledger must match reality before it can keep them."""
        sets: dict[str, set[str]] = {}
        for job in jobs:
            sets.setdefault(HOLDERS, set()).add(job.job_id)
            sets.setdefault(OWNER_HOLDERS_PREFIX + job.owner, set()).add(job.job_id)
        self._change("ADD", sets)

    def _item(self) -> dict[str, Any]:
        item = self._table.get_item(Key={"job_id": SLOTS_ITEM_ID}, ConsistentRead=True).get("Item")
        return dict(item) if item else {}

    def _change(self, operation: str, sets: dict[str, set[str]]) -> None:
        if sets:
            self._table.update_item(**self._change_request(operation, sets))

    @staticmethod
    def _change_request(operation: str, sets: dict[str, set[str]]) -> dict[str, Any]:
        """The ledger update that ADDs or DELETEs `sets` (attribute name: job ids)."""
        return {
            "Key": {"job_id": SLOTS_ITEM_ID},
            "UpdateExpression": f"{operation} " + ", ".join(f"#a{n} :v{n}" for n in range(len(sets))),
            "ExpressionAttributeNames": {f"#a{n}": name for n, name in enumerate(sets)},
            "ExpressionAttributeValues": {f":v{n}": ids for n, ids in enumerate(sets.values())},
        }


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

    def in_flight(self, job_id: str, attempt: int, *, now_epoch: int) -> bool:
        """Whether a launcher holds this attempt's claim now (its lease has not passed)."""
        key = {"job_id": _claim_key(job_id, attempt)}
        item = self._table.get_item(Key=key, ConsistentRead=True).get("Item")
        return item is not None and int(item["lease_until"]) >= now_epoch

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
