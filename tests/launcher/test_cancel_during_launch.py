"""A cancel that lands while the launcher's RunInstances call for the job is in flight."""

from __future__ import annotations

import uuid

import pytest

from control_plane import admission
from control_plane.context import ControlPlane
from control_plane.ended import job_ended
from control_plane.launch import Outcome
from control_plane.retry import after_loss, record_loss
from jobs import instances
from jobs.attempts import LossKind
from jobs.record import Job
from jobs.states import JobStatus
from tests.support.world import World


def cancel_during_run_instances(
    world: World, cp: ControlPlane, job: Job, status: JobStatus, monkeypatch: pytest.MonkeyPatch
) -> list[int]:
    """When RunInstances for `job` returns, the user has cancelled it (from `status`) and the
    launcher has handled the cancel's stream record (another invocation, or the same one's
    next record). The live instances counted after each RunInstances, filled in as they run."""
    real_run = instances.Ec2Fleet.launch
    live_after_each_run: list[int] = []

    def run_while_cancelled(
        fleet: instances.Ec2Fleet, request: instances.LaunchRequest
    ) -> instances.Instance:
        instance = real_run(fleet, request)
        if request.job_id == job.job_id:
            world.store.transition(job.job_id, [status], JobStatus.CANCELLED)
            job_ended(cp, job.job_id, job.owner, None)
        live_after_each_run.append(len(world.live_instances()))
        return instance

    monkeypatch.setattr(instances.Ec2Fleet, "launch", run_while_cancelled)
    return live_after_each_run


def test_the_slot_of_a_job_cancelled_during_its_launch_is_not_reused_while_its_instance_lives(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp = world.context(max_concurrent_jobs=1)
    job = world.put_job()
    waiting = world.put_job(JobStatus.QUEUED)
    live_at_most = cancel_during_run_instances(world, cp, job, JobStatus.PENDING, monkeypatch)
    assert admission.admit(cp, job) is Outcome.ENDED

    assert world.job(job.job_id).status is JobStatus.CANCELLED
    # With one slot, never two live instances: the queued job gets the slot only once the
    # cancelled job's instance is terminated.
    assert max(live_at_most) == 1, f"live instances seen: {live_at_most}"
    assert world.job(waiting.job_id).status is JobStatus.PROVISIONING
    assert world.slots.holders() == {waiting.job_id}


def test_a_job_cancelled_while_its_next_attempt_starts_passes_its_slot_on(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp = world.context(max_concurrent_jobs=1)
    job_id = str(uuid.uuid4())
    lost = world.start_instance(job_id, 1)
    job = world.put_job(JobStatus.RUNNING, job_id=job_id, attempt=1, instance_id=lost)
    world.slots.acquire(job_id, 1)
    waiting = world.put_job(JobStatus.QUEUED)
    assert record_loss(cp, job, LossKind.INSTANCE_LOST, "instance is gone").ok
    live_at_most = cancel_during_run_instances(world, cp, job, JobStatus.PROVISIONING, monkeypatch)
    assert after_loss(cp, job_id) is Outcome.ENDED

    assert max(live_at_most) == 1, f"live instances seen: {live_at_most}"
    # The launcher that gave the slot back offers it at once, not at the reaper's next pass.
    assert world.job(waiting.job_id).status is JobStatus.PROVISIONING
    assert world.slots.holders() == {waiting.job_id}
