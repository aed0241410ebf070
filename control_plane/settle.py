"""Settling a job: it gives back whatever its status no longer lets it hold
(`control_plane.holdings`). Every release of an owner's place, a slot or an instance goes
through here."""

from __future__ import annotations

from collections.abc import Iterable

from control_plane.context import ControlPlane
from control_plane.holdings import Holdings
from jobs import clock
from jobs.record import Job


def settle(
    cp: ControlPlane,
    job_id: str,
    owner: str,
    now: Job | None,
    *,
    instances: Iterable[str | None] = (),
    keep_slot: bool = False,
) -> Holdings:
    """Terminate those of `instances` the job may not keep, and give its slot and its place
    among `owner`'s unfinished jobs back unless it may hold them. `now` is the job as it is
    now: None when it has ended or is gone (an ended job holds nothing either). `keep_slot`:
    the launcher that is starting an instance for the job gives the slot back itself. Every
    step is idempotent."""
    allowed = Holdings.of(now, clock.epoch(clock.now()))
    stray = {instance_id for instance_id in instances if instance_id and instance_id != allowed.instance_id}
    if stray:
        cp.fleet.terminate(stray)
    if not allowed.slot and not keep_slot:
        cp.slots.release(job_id)
    if not allowed.place:
        cp.owners.release(owner, [job_id])
    return allowed
