"""Data access for the API-keys table.

A key is shown once, when it is created; the table keeps only its SHA-256 hash (the
table's partition key), the owner, a short key id for listing and a revoked flag.
A lookup hashes the presented key and reads that item: an attacker who reads the table
learns no usable key, and a timing difference in the lookup says nothing about the key
itself because the hash hides it. The final hash comparison is constant-time anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, ConditionBase

from jobs import aws, clock
from jobs.dynamo import Conditional, conditional
from jobs.rate_limit import MICROS, RateLimit, Spend, decide

KEY_PREFIX = "srk_"
KEY_ID_LENGTH = 12
# Keys are ASCII and short; anything else is not a key and is rejected before hashing.
MAX_KEY_LENGTH = 256
OWNER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@\-]{0,127}$")
# The key's request bucket (jobs.rate_limit): its arrival time, epoch microseconds.
BUCKET_ATTRIBUTE = "rate_arrival_us"
# A write refused because the bucket crossed from full to used (or back) since it was read
# is decided again on what it holds; crossing more often than this in one request is a flood.
SPEND_TRIES = 3


class InvalidOwner(ValueError):
    pass


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    owner: str
    created_at: str
    revoked: bool
    revoked_at: str | None = None


@dataclass(frozen=True)
class KeyHolder:
    """A valid key's owner and its request bucket as read."""

    key_hash: str
    owner: str
    arrival_us: int | None  # the request bucket as read (jobs.rate_limit)


@dataclass(frozen=True)
class NewApiKey:
    key: str  # the plaintext key: shown once, never stored
    record: ApiKeyRecord


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key_hash: str) -> str:
    return key_hash[:KEY_ID_LENGTH]


class ApiKeyStore:
    def __init__(self, table_name: str, table: Any | None = None) -> None:
        self.table_name = table_name
        self._table = table if table is not None else aws.table(table_name)

    def create(self, owner: str) -> NewApiKey:
        if not OWNER_PATTERN.match(owner):
            raise InvalidOwner(
                "owner must start with a letter or digit and hold at most 128 letters, digits or . _ @ -"
            )
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        key_hash = hash_key(key)
        record = ApiKeyRecord(
            key_id=key_id_of(key_hash), owner=owner, created_at=clock.now_iso(), revoked=False
        )
        self._table.put_item(
            Item={
                "key_hash": key_hash,
                "key_id": record.key_id,
                "owner": owner,
                "created_at": record.created_at,
                "revoked": False,
            },
            ConditionExpression="attribute_not_exists(key_hash)",
        )
        return NewApiKey(key=key, record=record)

    def owner_of(self, presented: str | None) -> str | None:
        """The owner of a valid, unrevoked key; None for anything else."""
        holder = self.authenticate(presented)
        return holder.owner if holder else None

    def authenticate(self, presented: str | None) -> KeyHolder | None:
        """A valid, unrevoked key's owner and bucket; None for anything else."""
        if not presented or len(presented) > MAX_KEY_LENGTH or not presented.isascii():
            return None
        presented_hash = hash_key(presented)
        item = self._table.get_item(Key={"key_hash": presented_hash}, ConsistentRead=True).get("Item")
        if not item or item.get("revoked", False):
            return None
        if not hmac.compare_digest(str(item["key_hash"]), presented_hash):
            return None
        return KeyHolder(key_hash=presented_hash, owner=str(item["owner"]), arrival_us=_arrival(item))

    def spend(self, holder: KeyHolder, limit: RateLimit, now: datetime) -> int | None:
        """Take a token from the key's bucket: None when taken, else the seconds until one
        is there. One conditional write, an atomic addition while tokens are left: a write
        refused because the bucket changed state since it was read decides again on the
        bucket as it is."""
        now_us = int(now.timestamp() * MICROS)
        arrival_us = holder.arrival_us
        for _ in range(SPEND_TRIES):
            decision = decide(arrival_us, now_us, limit)
            if decision.spend is None:
                return decision.retry_after_seconds
            written = self._write_bucket(holder.key_hash, decision.spend, now_us, limit)
            if written.ok:
                return None
            if written.old is None:  # the key was deleted meanwhile
                return 1
            arrival_us = _arrival(written.old)
        return 1

    def _write_bucket(self, key_hash: str, spend: Spend, now_us: int, limit: RateLimit) -> Conditional:
        bucket = Attr(BUCKET_ATTRIBUTE)
        condition: ConditionBase
        if spend is Spend.REFILLED:
            expression, values = "SET #b = :next", {":next": now_us + limit.interval_us}
            condition = bucket.not_exists() | bucket.lt(now_us)
        else:
            expression, values = "SET #b = #b + :interval", {":interval": limit.interval_us}
            condition = bucket.between(now_us, now_us + limit.tolerance_us)
        return conditional(
            lambda: self._table.update_item(
                Key={"key_hash": key_hash},
                UpdateExpression=expression,
                ConditionExpression=Attr("key_hash").exists() & condition,
                ExpressionAttributeNames={"#b": BUCKET_ATTRIBUTE},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        )

    def list(self) -> list[ApiKeyRecord]:
        """Every key, oldest first (an admin command: the table holds few items)."""
        records = [_record(item) for item in self._scan()]
        return sorted(records, key=lambda r: (r.created_at, r.key_id))

    def revoke(self, key_id: str) -> bool:
        """Revoke the key with this id. False if there is none (or it is already revoked)."""
        results = [self._revoke(str(item["key_hash"])) for item in self._scan(key_id=key_id)]
        return any(results)

    def _revoke(self, key_hash: str) -> bool:
        return conditional(
            lambda: self._table.update_item(
                Key={"key_hash": key_hash},
                UpdateExpression="SET revoked = :true, revoked_at = :now",
                ConditionExpression="attribute_exists(key_hash) AND revoked = :false",
                ExpressionAttributeValues={":true": True, ":false": False, ":now": clock.now_iso()},
            )
        ).ok

    def _scan(self, key_id: str | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"ConsistentRead": True}
        if key_id is not None:
            kwargs["FilterExpression"] = "key_id = :id"
            kwargs["ExpressionAttributeValues"] = {":id": key_id}
        while True:
            answer = self._table.scan(**kwargs)
            yield from answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def _arrival(item: dict[str, Any]) -> int | None:
    value = item.get(BUCKET_ATTRIBUTE)
    return int(value) if value is not None else None


def _record(item: dict[str, Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=str(item.get("key_id") or key_id_of(str(item["key_hash"]))),
        owner=str(item["owner"]),
        created_at=str(item.get("created_at", "")),
        revoked=bool(item.get("revoked", False)),
        revoked_at=str(item["revoked_at"]) if item.get("revoked_at") else None,
    )
