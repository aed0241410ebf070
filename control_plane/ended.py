"""A job ended: what follows, once, whoever noticed (the launcher on the stream record)."""

from __future__ import annotations

from control_plane.admission import admit_queued
from control_plane.context import ControlPlane
from control_plane.settle import settle
from control_plane.telemetry import logger


def job_ended(cp: ControlPlane, job_id: str, owner: str, instance_id: str | None) -> None:
    """A job reached a terminal status: terminate its instance, give its slot and its
    owner's place back, and hand free slots to queued jobs.

    The worker writes the outcome as its last act and then terminates itself; terminating
    here as well (idempotent) means the freed slot never has two live instances on it, and
    a cancelled launch's instance stops at once.
    """
    settle(cp, job_id, owner, None, instances=[instance_id])
    if instance_id:
        logger.info(
            "terminated the ended job's instance", extra={"job_id": job_id, "instance_id": instance_id}
        )
    admit_queued(cp)
