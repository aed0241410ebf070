"""The reaper's slot reconcile against a launcher admitting a job at the same moment.

A waiting job that holds a slot keeps it while a launcher holds the launch claim of its next
attempt: the launcher takes the claim before the slot, and the reaper releases a waiting
job's slot on condition that nobody holds the claim, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from control_plane.admission import admit, admit_queued
from control_plane.context import ControlPlane
from jobs.instances import Instance, LaunchRequest
from jobs.states import JobStatus
from tests.support.reaper import run_reaper
from tests.support.world import World, acting_after_call, ago


@dataclass
class ReaperDuringRunInstances:
    """The fleet of a launcher whose RunInstances call takes long enough for a reaper pass
    to run in the middle of it (RunInstances takes seconds; the reaper runs every minute)."""

    world: World
    passes: int = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.world.fleet, name)

    def launch(self, request: LaunchRequest) -> Instance:
        if not self.passes:
            self.passes += 1
            run_reaper(self.world, max_concurrent_jobs=1)
        return self.world.fleet.launch(request)


def test_a_job_queued_long_ago_keeps_the_slot_it_is_being_launched_in(world: World) -> None:
    # Queued for longer than slot_hold_grace_seconds: nothing unusual when every slot is busy.
    queued_since = ago(seconds=world.settings.slot_hold_grace_seconds + 60)
    long_queued = world.put_job(JobStatus.QUEUED, age=timedelta(hours=1), updated_at=queued_since)
    other = world.put_job(JobStatus.QUEUED, age=timedelta(minutes=1))
    launcher = world.context(max_concurrent_jobs=1)
    launcher = ControlPlane(
        launcher.settings,
        launcher.jobs,
        launcher.slots,
        launcher.claims,
        ReaperDuringRunInstances(world),  # type: ignore[arg-type]
        launcher.owners,
    )

    # A slot freed: the launcher offers it to the oldest queued job.
    admit_queued(launcher)

    assert world.job(long_queued.job_id).status is JobStatus.PROVISIONING
    assert world.slots.holders() == {long_queued.job_id}, "the launched job lost its slot"
    # So the one slot is not handed out a second time.
    admit_queued(launcher)
    assert world.job(other.job_id).status is JobStatus.QUEUED
    assert len(world.live_instances()) == 1


@pytest.mark.parametrize("stale_slot", [True, False], ids=["holding-a-stale-slot", "holding-no-slot"])
@pytest.mark.parametrize("after_call", range(1, 21))
def test_a_launcher_admitting_a_long_queued_job_at_any_point_of_a_reaper_pass_never_doubles_a_slot(
    world: World, after_call: int, stale_slot: bool
) -> None:
    queued_since = ago(seconds=world.settings.slot_hold_grace_seconds + 60)
    # First in line, so the reaper's own admission offers the slot to it, not to the job below.
    first = world.put_job(JobStatus.QUEUED, age=timedelta(hours=2), owner="first-owner")
    long_queued = world.put_job(JobStatus.QUEUED, age=timedelta(hours=1), updated_at=queued_since)
    if stale_slot:  # a launcher's launch failed for good, or it died before it gave the slot back
        world.slots.acquire(long_queued.job_id, 1)

    def launcher_admits() -> None:  # on a stream record of the job
        admit(world.context(max_concurrent_jobs=1), world.job(long_queued.job_id))

    with acting_after_call(world, after_call, launcher_admits):
        run_reaper(world, max_concurrent_jobs=1)

    launched = {
        job.job_id for job in (first, long_queued) if world.job(job.job_id).status is JobStatus.PROVISIONING
    }
    assert launched <= world.slots.holders(), "a launched job holds no slot"
    admit_queued(world.context(max_concurrent_jobs=1))
    assert len(world.live_instances()) <= 1
