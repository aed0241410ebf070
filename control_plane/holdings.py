"""What a job may hold in each status: the one rule every release and restore follows.

A job can hold four things:
- a place among its owner's unfinished jobs (the owner ledger, `jobs.owners`), from its
  creation until it ends;
- a worker slot (its id in the slot ledger);
- the launch claim of an attempt (a lease: only while a launcher starts that attempt);
- an instance (the one its item names, started for its current attempt).

At rest, that is with no launcher working on it, a job waiting for a slot holds its place
only, a job that has an instance holds its place, its slot and that one instance, and an
ended, expired or missing job holds nothing. A launcher admitting a waiting job (or
relaunching a `provisioning` one) holds the slot and the claim of the attempt it starts until it has
recorded the launch or given up; then it settles the job (`control_plane.settle`).
Claims are not released by settling: an ended job is never launched again, and the lease
and the item's TTL end the claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from jobs.owners import holds_place
from jobs.record import Job
from jobs.states import JobStatus


class Resource(StrEnum):
    SLOT = "slot"
    CLAIM = "claim"
    INSTANCE = "instance"


_WITH_INSTANCE = frozenset({Resource.SLOT, Resource.INSTANCE})
# The slot and instance a job holds at rest, by status (its place: `jobs.owners.holds_place`).
AT_REST: dict[JobStatus, frozenset[Resource]] = {
    status: _WITH_INSTANCE
    if status in (JobStatus.PROVISIONING, JobStatus.RUNNING, JobStatus.CANCELLING)
    else frozenset()
    for status in JobStatus
}
# The statuses a launcher starts a new attempt from, holding the slot and that attempt's claim.
WAITING = (JobStatus.PENDING, JobStatus.QUEUED)
LAUNCHED_FROM = (*WAITING, JobStatus.PROVISIONING)


@dataclass(frozen=True)
class Holdings:
    """What one job may hold at rest."""

    place: bool
    slot: bool
    instance_id: str | None  # the one instance it may keep running

    @classmethod
    def of(cls, job: Job | None, now_epoch: int) -> Holdings:
        """`job` as it is now; None (or an expired job) holds nothing."""
        if job is None or job.is_expired(now_epoch):
            return NOTHING
        held = AT_REST[job.status]
        return cls(
            place=holds_place(job, now_epoch),
            slot=Resource.SLOT in held,
            instance_id=job.instance_id if Resource.INSTANCE in held else None,
        )


NOTHING = Holdings(place=False, slot=False, instance_id=None)
