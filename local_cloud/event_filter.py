"""The launcher's event source mapping filter, applied here as Lambda applies it: the local
stream poller delivers only the records Terraform's `filter_criteria` would let through."""

from __future__ import annotations

import json
from typing import Any

from services.launcher.filters import FILTER_PATTERNS


def matches(record: dict[str, Any]) -> bool:
    """Whether the event source mapping would deliver this stream record to the launcher."""
    return any(_matches(json.loads(pattern), record) for pattern in FILTER_PATTERNS)


def _matches(pattern: dict[str, Any], value: Any) -> bool:
    # The subset of EventBridge pattern syntax the filter uses: nested objects, and lists of
    # exact values ("any of"). Every key of the pattern must be present in the record.
    if not isinstance(value, dict):
        return False
    for key, expected in pattern.items():
        if key not in value:
            return False
        actual = value[key]
        if isinstance(expected, dict):
            if not _matches(expected, actual):
                return False
        elif actual not in expected:
            return False
    return True
