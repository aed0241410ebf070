"""Spot workers: asked for first across types and subnets, on-demand on Spot capacity errors
(spot-then-on-demand), and the job records which it got."""

from __future__ import annotations

import pytest

from jobs.instances import RUN_INSTANCES_ATTEMPTS
from tests.support.launcher import invoke
from tests.support.world import World, batch, ec2_faults, inserted

NO_SPOT = "InsufficientInstanceCapacity"


@pytest.fixture(autouse=True)
def _spot_first(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_CAPACITY", "spot-then-on-demand")  # the default; the world says on-demand


def spot(params: dict[str, str]) -> bool:
    return params.get("InstanceMarketOptions.MarketType") == "spot"


def test_a_worker_runs_on_spot_when_there_is_spot_capacity(world: World) -> None:
    job = world.put_job()
    with ec2_faults(lambda params: None) as calls:
        assert invoke(batch(inserted(job))) == []
    [(_, params)] = calls
    assert spot(params)
    assert params["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == "terminate"
    [instance] = world.live_instances(job.job_id)
    raw = world.ec2.describe_instances(InstanceIds=[instance.instance_id])["Reservations"][0]["Instances"][0]
    assert raw.get("InstanceLifecycle") == "spot"
    assert world.job(job.job_id).capacity == "spot"


def test_without_spot_capacity_anywhere_it_falls_back_to_on_demand_and_says_so(world: World) -> None:
    job = world.put_job()
    with ec2_faults(lambda params: NO_SPOT if spot(params) else None) as calls:
        assert invoke(batch(inserted(job))) == []
    tries = 2 * 2 * RUN_INSTANCES_ATTEMPTS  # two types in two subnets, on Spot
    assert [spot(params) for _, params in calls] == [True] * tries + [False]
    assert {params["InstanceType"] for _, params in calls[:tries]} == {"c5.large", "m5.large"}
    assert {params["SubnetId"] for _, params in calls[:tries]} == set(world.subnet_ids)
    assert world.job(job.job_id).capacity == "on-demand"


@pytest.mark.parametrize(("capacity", "market"), [("on-demand", False), ("spot", True)])
def test_the_capacity_is_a_setting(
    world: World, monkeypatch: pytest.MonkeyPatch, capacity: str, market: bool
) -> None:
    monkeypatch.setenv("WORKER_CAPACITY", capacity)
    job = world.put_job()
    with ec2_faults(lambda params: None) as calls:
        assert invoke(batch(inserted(job))) == []
    assert [spot(params) for _, params in calls] == [market]


def test_spot_only_does_not_fall_back(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_CAPACITY", "spot")
    job = world.put_job()
    with ec2_faults(lambda params: NO_SPOT if spot(params) else None) as calls:
        invoke(batch(inserted(job)))
    assert all(spot(params) for _, params in calls)
    assert world.live_instances(job.job_id) == []
