"""A forged or damaged job item (a worker may write job items) is skipped, logged and left for
an operator: it neither fails the reaper's run nor hides the other jobs from it."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from jobs.states import JobStatus
from jobs.store import UNREADABLE_ITEM
from tests.support.reaper import run_reaper
from tests.support.world import World, ago


def test_the_reaper_skips_an_unreadable_item_and_reaps_the_rest(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    forged_id = "forged-0000-4000-8000-000000000000"
    world.table.put_item(
        Item={
            "job_id": forged_id,
            "status": "running",
            "active_status": "running",
            "created_at": ago(hours=2),
            "progress": "not an object",
        }
    )
    stale = world.put_job(JobStatus.RUNNING, heartbeat_at=ago(hours=1), age=timedelta(hours=1))
    world.slots.acquire(stale.job_id, 100)
    with caplog.at_level(logging.ERROR, logger="jobs.store"):
        run_reaper(world)
    # The lost worker was dealt with (a lost attempt: retried, or failed when none is left).
    assert world.job(stale.job_id).status in (JobStatus.PROVISIONING, JobStatus.FAILED)
    assert world.job(stale.job_id).lost_attempts
    records = [r for r in caplog.records if r.getMessage() == UNREADABLE_ITEM]
    assert records and getattr(records[0], "job_id", None) == forged_id
    assert "not an object" not in caplog.text
