"""Each job's logs are a log group of its own that only the instance running its current
attempt may write (tests/security/test_worker_reach.py judges the policy): the launch
creates the group and tags it with that instance's caller id before the instance is given
its credentials; a relaunch moves the tag; the reaper deletes the group of a job it expires."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import boto3
import pytest

from control_plane.admission import admit
from control_plane.context import ControlPlane
from control_plane.launch import Outcome, launch
from jobs import clock
from jobs.job_logs import WRITER_TAG, JobLogGroups, job_log_group
from jobs.worker_identity import worker_user_id
from services.reaper.logic import reap
from tests.support.aws_env import ACCOUNT_ID, REGION
from tests.support.world import WORKER_ROLE_ID, World


@pytest.fixture
def cp(world: World) -> ControlPlane:
    logs = boto3.client("logs", region_name=REGION)
    groups = JobLogGroups(
        world.settings.worker_log_group,
        arn_prefix=f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:",
        retention_days=7,
        client=logs,
    )
    return replace(world.context(), job_logs=groups)


def _group(job_id: str, world: World) -> dict[str, Any] | None:
    logs = boto3.client("logs", region_name=REGION)
    name = job_log_group(world.settings.worker_log_group, job_id)
    found = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    group = next((group for group in found if group["logGroupName"] == name), None)
    if group is not None:
        group["tags"] = logs.list_tags_for_resource(resourceArn=group["arn"].removesuffix(":*"))["tags"]
    return group


def test_the_launch_hands_the_jobs_log_group_to_its_instance_and_a_relaunch_takes_it_back(
    world: World, cp: ControlPlane
) -> None:
    job = world.put_job()
    assert admit(cp, job) is Outcome.LAUNCHED
    first = world.job(job.job_id)
    group = _group(job.job_id, world)
    assert group is not None and group["retentionInDays"] == 7
    assert group["tags"] == {WRITER_TAG: worker_user_id(WORKER_ROLE_ID, str(first.instance_id))}

    world.fleet.terminate([str(first.instance_id)])  # lost: the reaper relaunches it
    assert launch(cp, first) is Outcome.LAUNCHED
    second = world.job(job.job_id)
    assert second.attempt == 2 and second.instance_id != first.instance_id
    group = _group(job.job_id, world)
    assert group is not None
    assert group["tags"] == {WRITER_TAG: worker_user_id(WORKER_ROLE_ID, str(second.instance_id))}


def test_the_reaper_deletes_the_log_group_of_a_job_it_expires(world: World, cp: ControlPlane) -> None:
    job = world.put_job()
    admit(cp, job)
    world.table.update_item(
        Key={"job_id": job.job_id},
        UpdateExpression="SET expires_at = :e",
        ExpressionAttributeValues={":e": clock.epoch(clock.now()) - 1},
    )
    assert _group(job.job_id, world) is not None

    report = reap(cp, world.settings)

    assert report.count("deleted_expired") == 1
    assert _group(job.job_id, world) is None
    assert world.store.get(job.job_id, include_expired=True) is None
