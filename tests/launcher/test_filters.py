"""The launcher's stream filter: one definition, and `matches` agrees with the patterns."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.events.models import EventPattern

from jobs.reports import REPORT_ATTRIBUTE
from jobs.states import JobStatus
from jobs.tables import SLOTS_ITEM_ID
from jobs.worker_identity import worker_user_id
from local_cloud.event_filter import matches
from services.launcher.filters import FILTER_PATTERNS, filter_criteria
from tests.support.world import WORKER_ROLE_ID, World, inserted, modified, stream_record


def _event_bridge_matches(record: dict[str, Any]) -> bool:
    """An independent evaluation of the same patterns (moto's EventBridge pattern engine)."""
    return any(EventPattern.load(pattern).matches_event(record) for pattern in FILTER_PATTERNS)  # type: ignore[arg-type]


def _cases(world: World) -> list[tuple[str, dict[str, Any], bool]]:
    pending = world.put_job(JobStatus.PENDING)
    queued = pending.model_copy(update={"status": JobStatus.QUEUED})
    provisioning = pending.model_copy(
        update={"status": JobStatus.PROVISIONING, "instance_id": "i-1", "attempt": 1}
    )
    running = provisioning.model_copy(update={"status": JobStatus.RUNNING})
    completed = running.model_copy(update={"status": JobStatus.COMPLETED})
    wiped = completed.model_copy(update={"error": "x"})
    cancelled = provisioning.model_copy(update={"status": JobStatus.CANCELLED})
    ledger = {"job_id": SLOTS_ITEM_ID, "holders": {"a", "b"}}
    report = {
        "job_id": worker_user_id(WORKER_ROLE_ID, "i-0123456789abcdef0"),
        REPORT_ATTRIBUTE: {"job_id": pending.job_id, "kind": "beat"},
    }
    return [
        ("new pending job", inserted(pending), True),
        ("pending -> queued", modified(pending, queued), False),
        ("queued -> provisioning", modified(queued, provisioning), False),
        ("provisioning -> running", modified(provisioning, running), False),
        ("running -> completed", modified(running, completed), True),
        (
            "pending -> cancelled",
            modified(pending, pending.model_copy(update={"status": JobStatus.CANCELLED})),
            True,
        ),
        ("provisioning -> cancelled", modified(provisioning, cancelled), True),
        ("write to an ended job", modified(completed, wiped), False),
        ("item inserted already running", inserted(running), False),
        ("ttl removal", stream_record("REMOVE", old=completed), False),
        ("slot ledger insert", stream_record("INSERT", new=ledger), False),
        (
            "slot ledger change",
            stream_record("MODIFY", new=ledger, old={"job_id": SLOTS_ITEM_ID, "holders": {"a"}}),
            False,
        ),
        ("a worker's first report", stream_record("INSERT", new=report), True),
        ("a worker's next report", stream_record("MODIFY", new=report, old=report), True),
        ("a report item's expiry", stream_record("REMOVE", old=report), False),
    ]


def test_matches_selects_exactly_the_launcher_records(world: World) -> None:
    for name, record, expected in _cases(world):
        assert matches(record) is expected, name


def test_matches_agrees_with_an_event_bridge_evaluation_of_the_patterns(world: World) -> None:
    for name, record, _ in _cases(world):
        assert matches(record) is _event_bridge_matches(record), name


def test_patterns_are_json_for_the_event_source_mapping() -> None:
    criteria = filter_criteria()
    assert [f["Pattern"] for f in criteria["Filters"]] == list(FILTER_PATTERNS)
    for pattern in FILTER_PATTERNS:
        parsed = json.loads(pattern)
        assert set(parsed) == {"eventName", "dynamodb"}
    assert len(FILTER_PATTERNS) <= 5  # Lambda's default limit of filters per mapping


@pytest.mark.parametrize("status", [s for s in JobStatus if s.is_terminal])
def test_every_terminal_status_frees_a_slot(world: World, status: JobStatus) -> None:
    running = world.put_job(JobStatus.RUNNING)
    assert matches(modified(running, running.model_copy(update={"status": status})))
