"""The launcher's event source mapping filter, as the control plane's change rules select
records (the rules Terraform's `filter_criteria` is generated from). The local stack's
poller applies the deployed mapping's patterns instead (local_cloud/wiring.py); tests check
that the two select the same records."""

from __future__ import annotations

from typing import Any

from control_plane.changes import StreamChange, classify


def matches(record: dict[str, Any]) -> bool:
    """Whether the event source mapping would deliver this stream record to the launcher."""
    body = record.get("dynamodb", {})
    if "job_id" not in body.get("Keys", {}):
        return False
    return classify(StreamChange.from_record(record)) is not None
