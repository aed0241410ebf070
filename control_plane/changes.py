"""What a change of the jobs table means to the control plane, stated once as data.

`RULES` names the changes the control plane acts on; `classify` applies them to one
stream record, and `filter_patterns` renders them as the Lambda event source mapping's
filter patterns (Terraform's `filter_criteria`). The launcher's handler, its filter and
the local cloud's stream poller all follow the same rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from jobs.states import ACTIVE, TERMINAL, JobStatus


class Change(StrEnum):
    NEW_JOB = "new_job"  # a job to admit
    JOB_ENDED = "job_ended"  # its slot frees, its instance (if any) is terminated
    ATTEMPT_LOST = "attempt_lost"  # the next attempt starts, or the job fails (control_plane.retry)
    WORKER_REPORT = "worker_report"  # copied into its job's item (control_plane.reports)


# Report items are keyed by a worker's caller id (jobs.worker_identity), which begins with
# the role's unique id; job ids never do.
REPORT_KEY_PREFIX = "AROA"
REPORT_EVENTS = ("INSERT", "MODIFY")


@dataclass(frozen=True)
class Rule:
    event_name: str
    new_statuses: frozenset[JobStatus]
    old_statuses: frozenset[JobStatus] | None = None  # None: the record has no old image


RULES: dict[Change, Rule] = {
    Change.NEW_JOB: Rule("INSERT", new_statuses=frozenset({JobStatus.PENDING})),
    # The old image must be active, so later writes to an ended job (credential wipes,
    # repeated terminal writes) do not count. This includes the cancel of a `provisioning`
    # job, whose instance is terminated.
    Change.JOB_ENDED: Rule("MODIFY", new_statuses=TERMINAL, old_statuses=ACTIVE),
    # A running attempt was lost (the worker's hand-back, or the reaper's finding).
    Change.ATTEMPT_LOST: Rule(
        "MODIFY",
        new_statuses=frozenset({JobStatus.PROVISIONING}),
        old_statuses=frozenset({JobStatus.RUNNING}),
    ),
}


@dataclass(frozen=True)
class StreamChange:
    """What the control plane needs from one stream record."""

    event_name: str
    job_id: str
    old_status: JobStatus | None
    new_status: JobStatus | None
    instance_id: str | None  # from the new image
    owner: str  # from the new image ("" when it has none)
    new_image: dict[str, Any] | None = None  # kept for a worker's report only

    @classmethod
    def from_images(
        cls, event_name: str, keys: dict[str, Any], old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> StreamChange:
        """From deserialized images (as Powertools' DynamoDBRecord gives them)."""
        old, new = old or {}, new or {}
        job_id = str(keys["job_id"])
        return cls(
            event_name=event_name,
            job_id=job_id,
            old_status=_status(old),
            new_status=_status(new),
            instance_id=str(new["instance_id"]) if new.get("instance_id") else None,
            owner=str(new.get("owner") or ""),
            new_image=new if job_id.startswith(REPORT_KEY_PREFIX) else None,
        )

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> StreamChange:
        """From a stream record as Lambda delivers it (typed images)."""
        body = record.get("dynamodb", {})

        def plain(image: dict[str, Any] | None) -> dict[str, Any]:
            deserializer = TypeDeserializer()
            return {key: deserializer.deserialize(value) for key, value in (image or {}).items()}

        return cls.from_images(
            str(record.get("eventName")),
            plain(body.get("Keys")),
            plain(body.get("OldImage")),
            plain(body.get("NewImage")),
        )


def classify(change: StreamChange) -> Change | None:
    """The rule this change meets, or None when the control plane has nothing to do."""
    if change.new_image is not None:
        return Change.WORKER_REPORT if change.event_name in REPORT_EVENTS else None
    for kind, rule in RULES.items():
        if change.event_name != rule.event_name or change.new_status not in rule.new_statuses:
            continue
        if rule.old_statuses is None or change.old_status in rule.old_statuses:
            return kind
    return None


def filter_patterns() -> tuple[str, ...]:
    """The rules as event source mapping filter patterns (JSON, keys sorted). Items
    without a `status` (the slot ledger, launch claims) never match the status rules; a
    worker's report item matches by its key."""

    def statuses(values: frozenset[JobStatus]) -> dict[str, Any]:
        return {"status": {"S": sorted(s.value for s in values)}}

    patterns = []
    for rule in RULES.values():
        images = {"NewImage": statuses(rule.new_statuses)}
        if rule.old_statuses is not None:
            images["OldImage"] = statuses(rule.old_statuses)
        patterns.append(json.dumps({"eventName": [rule.event_name], "dynamodb": images}, sort_keys=True))
    reports = {"Keys": {"job_id": {"S": [{"prefix": REPORT_KEY_PREFIX}]}}}
    patterns.append(json.dumps({"eventName": list(REPORT_EVENTS), "dynamodb": reports}, sort_keys=True))
    return tuple(patterns)


def _status(image: dict[str, Any]) -> JobStatus | None:
    value = image.get("status")
    try:
        return JobStatus(value) if value else None
    except ValueError:
        return None
