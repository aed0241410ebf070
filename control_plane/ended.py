"""A job ended: what follows, once, whoever noticed (the launcher on the stream record)."""

from __future__ import annotations

from control_plane.admission import admit_queued
from control_plane.context import ControlPlane
from control_plane.settle import settle
from control_plane.telemetry import logger
from jobs import clock


def job_ended(cp: ControlPlane, job_id: str, owner: str, instance_id: str | None) -> None:
    """A job reached a terminal status: terminate its instance, give its slot and its
    owner's place back, and hand free slots to queued jobs.

    The worker writes the outcome as its last act and then terminates itself; terminating
    here as well (idempotent) means the freed slot never has two live instances on it, and
    a cancelled launch's instance stops at once. For the same reason the slot of a job that
    ended while a launcher starts an instance for it stays with that launcher: it terminates
    the instance it started, then gives the slot back (`control_plane.launch`).
    """
    if _being_launched(cp, job_id):
        settle(cp, job_id, owner, None, instances=[instance_id], keep_slot=True)
        logger.info("job ended during its launch: the launcher gives its slot back", extra={"job_id": job_id})
    else:
        settle(cp, job_id, owner, None, instances=[instance_id])
    if instance_id:
        logger.info(
            "terminated the ended job's instance", extra={"job_id": job_id, "instance_id": instance_id}
        )
    admit_queued(cp)


def _being_launched(cp: ControlPlane, job_id: str) -> bool:
    """A launcher holds the claim of the job's next attempt (its lease has not passed)."""
    job = cp.jobs.get(job_id, include_expired=True)
    now_epoch = clock.epoch(clock.now())
    return job is not None and cp.claims.in_flight(job_id, job.attempt + 1, now_epoch=now_epoch)
