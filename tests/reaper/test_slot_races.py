"""The reaper's slot reconcile against a launcher admitting a job at the same moment.

A waiting job that holds a slot keeps it while a launcher holds the launch claim of its next
attempt. Still open: the few milliseconds between a launcher taking the slot and taking the
claim (`control_plane.launch` does not check that it still holds the slot once it has the
claim)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from control_plane.admission import admit_queued
from control_plane.context import ControlPlane
from jobs.instances import Instance, LaunchRequest
from jobs.states import JobStatus
from tests.support.reaper import run_reaper
from tests.support.world import World, ago


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
