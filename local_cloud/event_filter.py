"""The launcher's event source mapping filter, applied here as Lambda applies it: the local
stream poller delivers only the records the control plane's change rules select (the rules
Terraform's `filter_criteria` is generated from)."""

from __future__ import annotations

from typing import Any

from control_plane.changes import StreamChange, classify


def matches(record: dict[str, Any]) -> bool:
    """Whether the event source mapping would deliver this stream record to the launcher."""
    body = record.get("dynamodb", {})
    if "job_id" not in body.get("Keys", {}):
        return False
    return classify(StreamChange.from_record(record)) is not None
