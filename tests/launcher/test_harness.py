"""The moto world behaves like DynamoDB where the control plane relies on it: a read that
meets a write in progress sees the item wholly before or wholly after it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from jobs.record import Job
from jobs.states import JobStatus
from tests.support.world import World


def test_a_query_during_an_update_sees_the_item_before_or_after_it_never_half_written(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.parsing.executors import SetExecutor

    job = world.put_job()
    halfway = threading.Event()
    resume = threading.Event()
    real_set = SetExecutor.execute

    def set_then_pause_after_the_first(self: SetExecutor, item: Any) -> None:
        real_set(self, item)
        if not halfway.is_set():  # the index key (`active_status`) is written, `status` not yet
            halfway.set()
            resume.wait(timeout=10)

    monkeypatch.setattr(SetExecutor, "execute", set_then_pause_after_the_first)
    writer = threading.Thread(
        target=world.store.transition, args=(job.job_id, [JobStatus.PENDING], JobStatus.QUEUED)
    )
    writer.start()
    assert halfway.wait(timeout=10)
    seen: list[Job] = []
    reader = threading.Thread(target=lambda: seen.extend(world.store.active_jobs(JobStatus.QUEUED)))
    reader.start()
    reader.join(timeout=0.5)  # a reader that is not held back answers from the half-written item
    resume.set()
    writer.join()
    reader.join()

    assert [(j.job_id, j.status) for j in seen] == [(job.job_id, JobStatus.QUEUED)]
