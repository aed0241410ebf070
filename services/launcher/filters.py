"""The launcher's event source mapping filter: the control plane's change rules
(`control_plane.changes`) as Lambda filter patterns (Terraform's
`filter_criteria { filter { pattern = ... } }`, boto3's `FilterCriteria`)."""

from __future__ import annotations

from typing import Any

from control_plane.changes import filter_patterns

FILTER_PATTERNS: tuple[str, ...] = filter_patterns()


def filter_criteria() -> dict[str, Any]:
    """The `FilterCriteria` argument of CreateEventSourceMapping."""
    return {"Filters": [{"Pattern": pattern} for pattern in FILTER_PATTERNS]}
