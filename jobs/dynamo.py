"""DynamoDB idioms every data-access module uses, stated once: what a failed call's error
code is, whether it was a failed condition, equality conditions, and the item a failed
condition returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.conditions import Attr, ConditionBase
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELED = "TransactionCanceledException"
CONDITION_FAILED_REASON = "ConditionalCheckFailed"  # a transaction step's cancellation reason


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError, limit: int = 300) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))[:limit]


def is_condition_failed(exc: ClientError) -> bool:
    return error_code(exc) == CONDITION_FAILED


@dataclass(frozen=True)
class Conditional:
    """A conditional write's result: `answer` when it took effect, else the item as it was
    (`old`, when the call asked for it with ReturnValuesOnConditionCheckFailure)."""

    ok: bool
    answer: dict[str, Any] = field(default_factory=dict)
    old: dict[str, Any] | None = None


def conditional(write: Callable[[], dict[str, Any]]) -> Conditional:
    """Run a conditional write; a failed condition is a result, any other error raises."""
    try:
        return Conditional(ok=True, answer=write())
    except ClientError as exc:
        if not is_condition_failed(exc):
            raise
        return Conditional(ok=False, old=old_item(exc))


def all_equal(condition: ConditionBase, fields: Mapping[str, Any] | None) -> ConditionBase:
    """`condition` and, for each field, `field = value` (a writer acts only on the item as
    it last saw it)."""
    for name, value in (fields or {}).items():
        condition = condition & Attr(name).eq(value)
    return condition


def old_item(exc: ClientError) -> dict[str, Any] | None:
    """The item as it was when a condition failed (ReturnValuesOnConditionCheckFailure),
    which DynamoDB returns in its low-level form."""
    raw: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
    if not raw:
        return None
    deserializer = TypeDeserializer()
    return {key: deserializer.deserialize(value) for key, value in raw.items()}
