"""Numbers between Python and DynamoDB, both ways. No AWS imports: the models use it.

The DynamoDB resource layer refuses floats and hands every number back as Decimal."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def to_dynamo(value: Any) -> Any:
    """`value` with every float (in dicts and lists too) as a Decimal."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {key: to_dynamo(each) for key, each in value.items()}
    if isinstance(value, list):
        return [to_dynamo(each) for each in value]
    return value


def from_dynamo(value: Any) -> Any:
    """`value` with every Decimal as an int when it is whole, else a float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: from_dynamo(each) for key, each in value.items()}
    if isinstance(value, list):
        return [from_dynamo(each) for each in value]
    return value
