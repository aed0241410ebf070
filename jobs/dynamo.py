"""DynamoDB idioms every data-access module uses, stated once: what a failed call's error
code is, whether it was a failed condition, equality conditions, and the item a failed
condition returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.conditions import Attr, ConditionBase
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

CONDITION_FAILED = "ConditionalCheckFailedException"


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError, limit: int = 300) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))[:limit]


def is_condition_failed(exc: ClientError) -> bool:
    return error_code(exc) == CONDITION_FAILED


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
