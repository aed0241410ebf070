"""Injected EC2 errors (as HTTP answers, under botocore's retries): the right outcome for
each, nothing stuck, no slot leaked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from control_plane import admission
from control_plane.launch import Outcome
from jobs.instances import RUN_INSTANCES_ATTEMPTS
from jobs.states import JobStatus
from services.reaper.logic import reap
from tests.support.launcher import invoke
from tests.support.world import World, ago, batch, ec2_faults, failing, inserted

CAPACITY = "InsufficientInstanceCapacity"


def test_no_capacity_in_the_first_subnet_tries_the_next(world: World) -> None:
    job = world.put_job()
    first = world.subnet_ids[0]
    with ec2_faults(lambda params: CAPACITY if params.get("SubnetId") == first else None) as calls:
        assert invoke(batch(inserted(job))) == []
    # EC2 answers capacity shortages as server errors (500): botocore tries each subnet
    # RUN_INSTANCES_ATTEMPTS times, then the next subnet is tried.
    assert [answer for answer, _ in calls] == [CAPACITY] * RUN_INSTANCES_ATTEMPTS + ["ok"]
    [instance] = world.live_instances(job.job_id)
    raw = world.ec2.describe_instances(InstanceIds=[instance.instance_id])["Reservations"][0]["Instances"][0]
    assert raw["SubnetId"] == world.subnet_ids[1]
    assert world.job(job.job_id).status is JobStatus.PROVISIONING


def test_no_capacity_for_the_type_anywhere_falls_back_to_the_next_type(world: World) -> None:
    job = world.put_job()
    with ec2_faults(lambda params: CAPACITY if params.get("InstanceType") == "c5.large" else None) as calls:
        invoke(batch(inserted(job)))
    tries = 2 * RUN_INSTANCES_ATTEMPTS  # two subnets
    assert [params["InstanceType"] for _, params in calls] == ["c5.large"] * tries + ["m5.large"]
    assert {params["SubnetId"] for _, params in calls[:tries]} == set(world.subnet_ids)
    assert world.job(job.job_id).instance_type == "m5.large"


def test_no_capacity_at_all_puts_the_job_back_in_line_without_a_slot(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    job = world.put_job()
    with ec2_faults(lambda params: CAPACITY) as calls:
        assert invoke(batch(inserted(job))) == []
    assert len(calls) == 2 * 2 * RUN_INSTANCES_ATTEMPTS  # two subnets x two types
    assert world.job(job.job_id).status is JobStatus.QUEUED
    assert world.slots.holders() == set()
    assert world.live_instances() == []
    assert _failure_codes(capsys.readouterr().out) == [CAPACITY]

    assert world.job(job.job_id).capacity_failures == 1

    # Capacity is back: the next freed slot (or the reaper) launches it.
    admission.admit_queued(world.context())
    assert world.job(job.job_id).status is JobStatus.PROVISIONING


def test_a_job_fails_after_exactly_max_capacity_failures_and_lets_go_of_its_slot(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    limit = 3
    monkeypatch.setenv("MAX_CAPACITY_FAILURES", str(limit))
    ctx = world.context(max_capacity_failures=limit)
    job = world.put_job()
    with ec2_faults(lambda params: CAPACITY) as calls:
        assert invoke(batch(inserted(job))) == []
        for failures in range(1, limit):
            waiting = world.job(job.job_id)
            assert (waiting.status, waiting.capacity_failures) == (JobStatus.QUEUED, failures)
            assert world.slots.holders() == set()
            # What a freed slot or the reaper does with a queued job.
            outcomes = [outcome for _, outcome in admission.admit_queued(ctx)]
        assert outcomes == [Outcome.FAILED]
    assert len(calls) == limit * 2 * 2 * RUN_INSTANCES_ATTEMPTS  # each try: two subnets x two types

    failed = world.job(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.capacity_failures == limit
    assert failed.error == (
        f"No EC2 capacity for c5.large, m5.large in {', '.join(world.subnet_ids)} "
        f"after {limit} attempts: EC2 error {CAPACITY}"
    )
    assert world.slots.holders() == set()
    assert world.live_instances() == []
    assert _failure_codes(capsys.readouterr().out) == [CAPACITY] * limit
    assert admission.admit_queued(ctx) == []  # nothing left to try


def test_a_job_that_finds_capacity_after_a_few_failures_launches_normally(world: World) -> None:
    ctx = world.context(max_capacity_failures=3)
    job = world.put_job()
    capacity = False
    with ec2_faults(lambda params: None if capacity else CAPACITY):
        admission.admit(ctx, world.job(job.job_id))
        admission.admit_queued(ctx)
        assert world.job(job.job_id).capacity_failures == 2  # one short of the limit
        capacity = True
        assert [outcome for _, outcome in admission.admit_queued(ctx)] == [Outcome.LAUNCHED]
    launched = world.job(job.job_id)
    assert launched.status is JobStatus.PROVISIONING
    assert launched.attempt == 1
    [instance] = world.live_instances(job.job_id)
    assert launched.instance_id == instance.instance_id
    assert world.slots.holders() == {job.job_id}


def test_a_relaunch_without_capacity_keeps_its_slot_until_the_limit_then_fails(world: World) -> None:
    settings = world.settings.model_copy(update={"max_capacity_failures": 2})
    ctx = world.context(max_capacity_failures=2)
    job = world.put_job(
        JobStatus.PROVISIONING, attempt=1, instance_id="i-0123456789abcdef0", launched_at=ago(minutes=20)
    )
    world.slots.acquire(job.job_id, 100)
    with ec2_faults(lambda params: CAPACITY):
        reap(ctx, settings)
        retrying = world.job(job.job_id)
        assert (retrying.status, retrying.attempt, retrying.capacity_failures) == (
            JobStatus.PROVISIONING,
            1,
            1,
        )
        assert retrying.instance_id is None
        assert world.slots.holders() == {job.job_id}  # the reaper's next pass tries again

        reap(ctx, settings)
    failed = world.job(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.startswith("No EC2 capacity for c5.large, m5.large")
    assert f"after 2 attempts: EC2 error {CAPACITY}" in failed.error
    assert world.slots.holders() == set()
    assert world.live_instances() == []


def test_throttling_is_retried_by_botocore(world: World) -> None:
    job = world.put_job()
    with ec2_faults(failing("RequestLimitExceeded", "RequestLimitExceeded")) as calls:
        assert invoke(batch(inserted(job))) == []
    assert [answer for answer, _ in calls] == ["RequestLimitExceeded", "RequestLimitExceeded", "ok"]
    assert len(world.live_instances(job.job_id)) == 1


@pytest.mark.parametrize("code", ["RequestLimitExceeded", "InternalError"])
def test_throttling_or_5xx_beyond_the_retries_fails_the_record_for_redelivery(
    world: World, code: str
) -> None:
    job = world.put_job()
    other = world.put_job()
    record = inserted(job)
    with ec2_faults(
        lambda params: code if params.get("TagSpecification.1.Tag.1.Value") == job.job_id else None
    ):
        assert invoke(batch(record, inserted(other))) == [record["dynamodb"]["SequenceNumber"]]
    assert world.job(job.job_id).status is JobStatus.PENDING
    assert world.job(other.job_id).status is JobStatus.PROVISIONING  # the rest of the batch went on

    assert invoke(batch(record)) == []  # redelivered once EC2 answers again
    assert world.job(job.job_id).status is JobStatus.PROVISIONING
    assert len(world.live_instances(job.job_id)) == 1
    assert world.slots.holders() == {job.job_id, other.job_id}


@pytest.mark.parametrize("code", ["UnauthorizedOperation", "InvalidAMIID.NotFound", "InvalidParameterValue"])
def test_a_permanent_error_fails_the_job_with_the_code_and_frees_the_slot(
    world: World, code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job = world.put_job()
    with ec2_faults(lambda params: code) as calls:
        assert invoke(batch(inserted(job))) == []  # nothing to redeliver
    assert len(calls) == 1  # neither retried nor tried elsewhere
    failed = world.job(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and code in failed.error
    assert world.slots.holders() == set()
    assert world.live_instances() == []
    assert _failure_codes(capsys.readouterr().out) == [code]


def _failure_codes(stdout: str) -> list[str]:
    """ErrorCode dimensions of the LaunchFailures metrics in the EMF output."""
    codes = []
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        blob: dict[str, Any] = json.loads(line)
        if "LaunchFailures" in blob and "ErrorCode" in blob:
            codes.append(blob["ErrorCode"])
    return codes
