"""The launcher on moto: admission, launch, queueing, slot frees, cancels."""

from __future__ import annotations

import json
from typing import Any

import pytest

from control_plane import admission
from control_plane.ended import job_ended
from control_plane.launch import Outcome
from control_plane.telemetry import metrics
from jobs import instances
from jobs.owners import OwnerCapReached
from jobs.slots import Grant, OwnerLimit, SlotLedger
from jobs.states import JobStatus
from jobs.tables import SLOTS_ITEM_ID
from tests.support.jobs import new_job
from tests.support.launcher import invoke
from tests.support.world import World, batch, inserted, modified

GIB = 1024**3


def test_a_new_pending_job_gets_one_instance_from_the_launch_template(world: World) -> None:
    job = world.put_job(options={"estimated_size_bytes": 50 * GIB})

    assert invoke(batch(inserted(job))) == []

    stored = world.job(job.job_id)
    assert stored.status is JobStatus.PROVISIONING
    assert stored.attempt == 1
    assert stored.instance_type == "c5.large"
    assert stored.launched_at is not None
    [instance] = world.live_instances(job.job_id)
    assert stored.instance_id == instance.instance_id
    assert instance.attempt == 1
    assert world.slots.holders() == {job.job_id}
    raw = world.ec2.describe_instances(InstanceIds=[instance.instance_id])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert tags["JobId"] == job.job_id
    assert tags["ManagedBy"] == world.settings.managed_by
    assert tags["Project"] == "seren-test"
    assert job.job_id in tags["Name"]
    assert raw["SubnetId"] == world.subnet_ids[0]


def test_user_data_carries_the_job_id_and_non_secret_settings_only(world: World) -> None:
    job = world.put_job()
    invoke(batch(inserted(job)))
    [instance] = world.live_instances(job.job_id)
    script = world.user_data(instance.instance_id)
    assert script.startswith("#!/bin/bash\n")
    assert f"JOBS_TABLE_NAME={world.settings.jobs_table_name}" in script
    assert "WORKER_LOG_GROUP=/test/workers" in script
    assert "HEARTBEAT_INTERVAL_SECONDS=30" in script
    assert f"MAX_JOB_RUNTIME_SECONDS={7 * 24 * 3600}" in script  # the worker's own cap
    assert script.rstrip().endswith(
        f'exec "${{WORKER_SCRIPT:-/opt/seren-replicator/worker.sh}}" {job.job_id}'
    )
    assert "postgresql://" not in script
    assert "credentials" not in script.lower()


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (None, "c5.large"),
        (0, "t3.medium"),
        (10 * GIB - 1, "t3.medium"),
        (10 * GIB, "c5.large"),
        (100 * GIB, "c5.2xlarge"),
        (1024 * GIB, "c5.4xlarge"),
    ],
)
def test_instance_type_follows_the_estimated_size(world: World, size: int | None, expected: str) -> None:
    assert world.settings.instance_types_for(size) == [expected, "m5.large"]


def test_the_size_map_and_default_type_are_operator_settings(world: World) -> None:
    settings = world.settings.model_copy(
        update={
            "instance_type_by_size": [(5, "t3.small"), (None, "r5.large")],
            "default_instance_type": "m5.xlarge",
        }
    )
    assert settings.instance_types_for(4)[0] == "t3.small"
    assert settings.instance_types_for(5)[0] == "r5.large"
    assert settings.instance_types_for(None)[0] == "m5.xlarge"


def test_client_token_names_the_job_and_attempt_within_64_characters(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = world.put_job()
    with_token: list[str] = []
    original = instances.Ec2Fleet._run_one

    def spy(fleet: instances.Ec2Fleet, request: instances.LaunchRequest, *args: Any) -> instances.Instance:
        with_token.append(request.client_token)
        return original(fleet, request, *args)

    monkeypatch.setattr(instances.Ec2Fleet, "_run_one", spy)
    invoke(batch(inserted(job)))
    assert with_token == [f"{job.job_id}:1"]
    assert len(with_token[0]) <= 64


def test_without_a_free_slot_the_job_is_queued(world: World) -> None:
    for _ in range(3):
        world.slots.acquire(world.put_job(JobStatus.RUNNING, attempt=1, instance_id="i-x").job_id, 3)
    job = world.put_job()

    invoke(batch(inserted(job)))

    assert world.job(job.job_id).status is JobStatus.QUEUED
    assert world.live_instances(job.job_id) == []
    assert job.job_id not in world.slots.holders()


def test_a_freed_slot_goes_to_the_oldest_queued_job(world: World) -> None:
    running = [world.put_job(JobStatus.RUNNING, attempt=1, instance_id=f"i-{n}") for n in range(3)]
    for job in running:
        world.slots.acquire(job.job_id, 3)
    older = world.put_job(JobStatus.QUEUED)
    newer = world.put_job(JobStatus.QUEUED)
    done = world.store.transition(running[0].job_id, [JobStatus.RUNNING], JobStatus.COMPLETED).job
    assert done is not None

    invoke(batch(modified(running[0], done)))

    assert world.job(older.job_id).status is JobStatus.PROVISIONING
    assert world.job(newer.job_id).status is JobStatus.QUEUED
    assert world.slots.holders() == {running[1].job_id, running[2].job_id, older.job_id}


def test_cancelling_a_provisioning_job_terminates_its_instance_and_frees_the_slot(world: World) -> None:
    job = world.put_job()
    invoke(batch(inserted(job)))
    launched = world.job(job.job_id)
    cancelled = world.store.transition(job.job_id, [JobStatus.PROVISIONING], JobStatus.CANCELLED).job
    assert cancelled is not None

    invoke(batch(modified(launched, cancelled)))

    assert world.instance_state(str(launched.instance_id)) == "terminated"
    assert world.slots.holders() == set()


def test_a_job_cancelled_while_its_instance_starts_gets_no_worker(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = world.put_job()
    started: list[str] = []
    real_run = instances.Ec2Fleet.launch

    def run_then_cancel(fleet: instances.Ec2Fleet, request: instances.LaunchRequest) -> instances.Instance:
        instance = real_run(fleet, request)
        started.append(instance.instance_id)
        world.store.transition(job.job_id, [JobStatus.PENDING], JobStatus.CANCELLED)
        return instance

    monkeypatch.setattr(instances.Ec2Fleet, "launch", run_then_cancel)
    assert admission.admit(world.context(), job) is Outcome.ENDED

    assert world.job(job.job_id).status is JobStatus.CANCELLED
    assert world.instance_state(started[0]) == "terminated"
    assert world.slots.holders() == set()


def test_records_without_work_change_nothing(world: World) -> None:
    running = world.put_job(JobStatus.RUNNING, attempt=1, instance_id="i-r")
    assert invoke(batch(inserted(running))) == []  # an INSERT for a job already past pending
    assert world.live_instances() == []
    assert world.slots.holders() == set()


def test_a_slot_freed_while_the_job_was_being_queued_is_not_missed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = world.put_job()
    real_acquire = SlotLedger.acquire
    refusals = [True]

    def full_once(self: SlotLedger, job_id: str, max_slots: int, owner: OwnerLimit | None = None) -> Grant:
        if refusals:
            refusals.clear()  # the ledger was full at that instant; a slot frees right after
            return Grant.FULL
        return real_acquire(self, job_id, max_slots, owner)

    monkeypatch.setattr(SlotLedger, "acquire", full_once)

    assert admission.admit(world.context(), job) is Outcome.LAUNCHED
    assert world.job(job.job_id).status is JobStatus.PROVISIONING


def test_launches_and_queueing_are_measured_and_logged_with_the_job_id(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    first = world.put_job()
    invoke(batch(inserted(first)))
    for _ in range(2):
        world.slots.acquire(world.put_job(JobStatus.RUNNING).job_id, 3)
    second = world.put_job()
    invoke(batch(inserted(second)))

    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metrics = [blob for blob in emitted if "_aws" in blob]
    assert any(blob.get("JobsLaunched") == [1.0] for blob in metrics)
    assert any("LaunchLatency" in blob for blob in metrics)
    assert any("JobsQueued" in blob for blob in metrics)
    launched = [record for record in caplog.records if record.getMessage() == "worker instance launched"]
    assert [getattr(record, "job_id", None) for record in launched] == [first.job_id]
    queued = [record for record in caplog.records if record.getMessage().startswith("job queued")]
    assert [getattr(record, "job_id", None) for record in queued] == [second.job_id]


def test_an_ended_job_gives_its_owners_place_back_once(world: World) -> None:
    job = new_job(owner="carol")
    assert world.store.create(job, b"ciphertext", owner_cap=1).created
    invoke(batch(inserted(job)))
    launched = world.job(job.job_id)
    assert world.owners.unfinished("carol") == {job.job_id}
    with pytest.raises(OwnerCapReached):
        world.store.create(new_job(owner="carol"), b"ciphertext", owner_cap=1)
    done = world.store.transition(job.job_id, [JobStatus.PROVISIONING], JobStatus.FAILED).job
    assert done is not None

    invoke(batch(modified(launched, done)))
    invoke(batch(modified(launched, done)))  # a redelivered record gives nothing more back

    assert world.owners.unfinished("carol") == set()
    assert world.store.create(new_job(owner="carol"), b"ciphertext", owner_cap=1).created
    assert len(world.owners.unfinished("carol")) == 1


def test_an_owner_at_its_running_limit_waits_queued_while_another_owner_is_launched(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = world.context(max_running_jobs_per_owner=1)
    first, second, other = world.put_job(owner="a"), world.put_job(owner="a"), world.put_job(owner="b")

    outcomes = [admission.admit(ctx, world.job(job.job_id)) for job in (first, second, other)]
    metrics.flush_metrics()

    assert outcomes == [Outcome.LAUNCHED, Outcome.QUEUED, Outcome.LAUNCHED]
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any(blob.get("JobsQueuedAtOwnerLimit") == [1.0] for blob in emitted if "_aws" in blob)
    assert world.slots.holders() == {first.job_id, other.job_id}  # the third slot stays free
    ledger = world.table.get_item(Key={"job_id": SLOTS_ITEM_ID}, ConsistentRead=True)["Item"]
    assert (ledger["owner#a"], ledger["owner#b"]) == ({first.job_id}, {other.job_id})

    done = world.store.transition(first.job_id, [JobStatus.PROVISIONING], JobStatus.FAILED).job
    assert done is not None
    job_ended(ctx, first.job_id, "a", world.job(first.job_id).instance_id)

    assert world.job(second.job_id).status is JobStatus.PROVISIONING
    assert world.slots.holders() == {second.job_id, other.job_id}
    ledger = world.table.get_item(Key={"job_id": SLOTS_ITEM_ID}, ConsistentRead=True)["Item"]
    assert ledger["owner#a"] == {second.job_id}
