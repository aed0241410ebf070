"""The launcher copies a worker's report (a stream record of its report item) into the job
item, taking the reporting instance from the item's key."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from jobs import clock
from jobs.attempts import CheckpointState, DatabaseCheckpoint
from jobs.reports import REPORT_ATTRIBUTE
from jobs.states import JobStatus
from jobs.worker_identity import worker_user_id
from tests.support.launcher import invoke
from tests.support.reaper import run_reaper
from tests.support.world import WORKER_ROLE_ID, World, ago, batch, stream_record


def report_record(instance_id: str, report: dict[str, Any], event: str = "MODIFY") -> dict[str, Any]:
    key = worker_user_id(WORKER_ROLE_ID, instance_id)
    return stream_record(event, new={"job_id": key, REPORT_ATTRIBUTE: report, "expires_at": 1})


def start(job_id: str, seq: int = 1) -> dict[str, Any]:
    return {"job_id": job_id, "attempt": 1, "seq": seq, "kind": "start", "at": clock.now_iso()}


def test_a_start_report_moves_the_job_of_the_reporting_instance_to_running(world: World) -> None:
    job = world.put_job(JobStatus.PROVISIONING, instance_id="i-0000000000000000a", attempt=1)
    assert invoke(batch(report_record("i-0000000000000000a", start(job.job_id), "INSERT"))) == []
    stored = world.job(job.job_id)
    assert stored.status is JobStatus.RUNNING and stored.started_at is not None
    assert stored.reported is not None and stored.reported.covers("i-0000000000000000a", 1)


def test_a_report_from_another_instance_changes_nothing(world: World) -> None:
    job = world.put_job(JobStatus.RUNNING, instance_id="i-0000000000000000a", attempt=1)
    outcome = {
        **start(job.job_id), "kind": "outcome", "status": "failed", "error": "see https://phishing.example",
    }  # fmt: skip
    assert invoke(batch(report_record("i-0000000000000000b", outcome))) == []
    stored = world.job(job.job_id)
    assert stored.status is JobStatus.RUNNING and stored.error is None and stored.reported is None


def test_a_report_that_does_not_parse_is_skipped_not_retried(world: World) -> None:
    job = world.put_job(JobStatus.PROVISIONING, instance_id="i-0000000000000000a", attempt=1)
    broken = {**start(job.job_id), "kind": "promote-to-admin"}
    assert invoke(batch(report_record("i-0000000000000000a", broken))) == []
    assert world.job(job.job_id).status is JobStatus.PROVISIONING


@pytest.mark.parametrize("forged_time", ["not a time", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00"])
def test_a_report_with_a_time_the_reaper_cannot_use_leaves_the_reaper_working(
    world: World, forged_time: str
) -> None:
    """The reaper computes with the times a report sets (heartbeat_at, started_at): a worker
    that writes one it cannot parse, or past the end of the calendar once the job's runtime
    limit is added, must not stop every reaper pass, for every tenant; nor fail the launcher's
    batch again and again (a time before year 1 in UTC overflowed while it was read)."""
    job = world.put_job(JobStatus.PROVISIONING, instance_id="i-0000000000000000a", attempt=1)
    forged = {**start(job.job_id), "at": forged_time, "started_at": forged_time}
    assert invoke(batch(report_record("i-0000000000000000a", forged))) == []
    stale = world.put_job(JobStatus.RUNNING, heartbeat_at=ago(hours=1), age=timedelta(hours=1))
    world.slots.acquire(stale.job_id, 100)
    run_reaper(world)
    assert world.job(stale.job_id).lost_attempts
    reported = world.job(job.job_id)
    assert reported.status is JobStatus.PROVISIONING and reported.heartbeat_at is None


def test_a_report_older_than_the_one_applied_changes_nothing(world: World) -> None:
    """A retried batch replays records the launcher already applied, and the reaper may apply
    a worker's latest report before the stream delivers the older ones: an older report of
    the same instance must not take the job back (a checkpoint that forgets a finished or a
    created database, a heartbeat moved back in time)."""
    beaten = clock.now_iso()
    job = world.put_job(JobStatus.RUNNING, instance_id="i-0000000000000000a", attempt=1, heartbeat_at=beaten)

    def checkpoint(seq: int, state: str, at: str) -> dict[str, Any]:
        entry = {"key": "k1", "state": state, "created": True}
        return {**start(job.job_id, seq), "kind": "checkpoint", "at": at, "checkpoint": {"db1": entry}}

    newer, older = checkpoint(3, "done", clock.now_iso()), checkpoint(2, "copying", ago(minutes=1))
    stale_beat = {**start(job.job_id, 1), "kind": "beat", "at": ago(minutes=2)}
    assert invoke(batch(report_record("i-0000000000000000a", newer))) == []
    assert invoke(batch(*(report_record("i-0000000000000000a", r) for r in (older, stale_beat)))) == []
    stored = world.job(job.job_id)
    assert stored.checkpoint["db1"].state == "done" and stored.heartbeat_at == beaten
    assert stored.reported is not None and stored.reported.seq == 3


def test_a_checkpoint_entry_says_whether_the_job_found_the_users_database_empty(world: World) -> None:
    """`found_empty` (init may empty that database again on its next attempt, never drop it)
    reaches the job item; an item written before the field existed reads as not found empty."""
    job = world.put_job(
        JobStatus.RUNNING,
        instance_id="i-0000000000000000a",
        attempt=1,
        checkpoint={"db0": DatabaseCheckpoint(key="k0", state=CheckpointState.DONE, created=True)},
    )
    world.table.update_item(Key={"job_id": job.job_id}, UpdateExpression="REMOVE checkpoint.db0.found_empty")
    assert "found_empty" not in world.table.get_item(Key={"job_id": job.job_id})["Item"]["checkpoint"]["db0"]
    older = world.job(job.job_id).checkpoint["db0"]
    assert older.created and not older.found_empty

    entries = {
        "db0": older.model_dump(mode="json"),
        "db1": {"key": "k1", "state": "copying", "found_empty": True, "database_oid": 4294967295},
    }
    report = {**start(job.job_id, 2), "kind": "checkpoint", "checkpoint": entries}
    assert invoke(batch(report_record("i-0000000000000000a", report))) == []
    stored = world.job(job.job_id).checkpoint
    assert stored["db1"].found_empty and not stored["db1"].created
    assert stored["db1"].database_oid == 4294967295
    assert stored["db0"] == older


def test_a_report_dated_in_the_future_does_not_put_off_the_reaper(world: World) -> None:
    """The reaper ends a job past its runtime limit (counted from `started_at`) and takes a
    silent worker for lost (from `heartbeat_at`): a worker that dates its reports years ahead
    must not keep its job, and its slot, for ever."""
    instance_id = world.start_instance("job-from-the-future")
    job = world.put_job(
        JobStatus.PROVISIONING, job_id="job-from-the-future", instance_id=instance_id, attempt=1
    )
    future = "2999-01-01T00:00:00.000Z"
    assert (
        invoke(batch(report_record(instance_id, {**start(job.job_id), "at": future, "started_at": future})))
        == []
    )
    beat = {**start(job.job_id, 2), "kind": "beat", "at": future}
    assert invoke(batch(report_record(instance_id, beat))) == []
    assert world.job(job.job_id).status is JobStatus.RUNNING
    limit = job.options.runtime_limit(world.settings.max_job_runtime_seconds)
    later = clock.now() + timedelta(seconds=limit + world.settings.deadline_grace_seconds + 60)
    run_reaper(world, now=later)
    assert world.job(job.job_id).status is JobStatus.TIMEOUT


def test_a_report_naming_a_damaged_job_item_is_not_retried(world: World) -> None:
    """A report's job id is the worker's to choose: one naming an item that does not parse (the
    unreadable-item alarm counts those) must not fail the batch on every retry, holding up its
    stream shard's other records."""
    world.table.put_item(
        Item={"job_id": "damaged-0000", "status": "running", "instance_id": "i-0000000000000000b"}
    )
    beat = {**start("damaged-0000"), "kind": "beat"}
    assert invoke(batch(report_record("i-0000000000000000a", beat))) == []
