"""Admission: which waiting job gets a worker slot, and when.

A slot is an entry in the slot ledger's set, taken and given back idempotently; the
ledger keeps `max_concurrent_jobs` in all and `max_running_jobs_per_owner` per owner, both
as conditions on the write that takes a slot. A job whose owner is at its limit waits
`queued` like one that found every slot taken. Queued jobs are offered free slots oldest
first across owners (`in_line`): one owner's backlog never goes before another owner's
older jobs.

A launcher takes the launch claim of a job's next attempt before it takes a slot for it, and
holds it until the launch is recorded: the reaper gives a waiting job's slot back only while
nobody holds that claim, in one transaction (`SlotLedger.release_unless_launching`), so it
never releases a slot under a launcher that is using it. A launcher that takes no slot gives
the claim back at once, then looks for a slot freed while it held the claim
(`_claim_and_take_slot`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from aws_lambda_powertools.metrics import MetricUnit

from control_plane.context import ControlPlane
from control_plane.holdings import WAITING
from control_plane.launch import Outcome, claim_attempt, launch
from control_plane.telemetry import Metric, logger, metrics
from jobs.record import Job
from jobs.slots import Grant, OwnerLimit
from jobs.states import JobStatus


def in_line(queued: Iterable[Job]) -> list[Job]:
    """The order in which queued jobs are offered a free slot: round robin by age across
    owners. Each owner's oldest job, oldest first, then each owner's second oldest, and
    so on."""
    by_age = sorted(queued, key=lambda job: (job.created_at, job.job_id))
    before: Counter[str] = Counter()  # how many of its owner's jobs are older
    turns = []
    for job in by_age:
        turns.append((before[job.owner], job.created_at, job.job_id, job))
        before[job.owner] += 1
    return [job for *_, job in sorted(turns, key=lambda turn: turn[:3])]


def admit(cp: ControlPlane, job: Job) -> Outcome:
    """A `pending` or `queued` job: take a slot and launch it, or queue it."""
    if job.status not in WAITING:
        return Outcome.MOVED_ON
    grant = _claim_and_take_slot(cp, job)
    if grant is None:
        return Outcome.IN_FLIGHT
    if not grant:
        if job.status is JobStatus.QUEUED:
            return Outcome.QUEUED
        queued = cp.jobs.transition(
            job.job_id, [JobStatus.PENDING], JobStatus.QUEUED, only_if={"attempt": job.attempt}
        )
        if not queued.ok or queued.job is None:
            return Outcome.MOVED_ON
        metrics.add_metric(name=Metric.QUEUED, unit=MetricUnit.Count, value=1)
        if grant is Grant.OWNER_AT_LIMIT:
            metrics.add_metric(name=Metric.QUEUED_AT_OWNER_LIMIT, unit=MetricUnit.Count, value=1)
            logger.info("job queued: its owner holds as many slots as it may", extra={"job_id": job.job_id})
        else:
            logger.info("job queued: no free worker slot for it", extra={"job_id": job.job_id})
        job = queued.job
        # A slot freed between the refused acquire and the write above found no queued job.
        grant = _claim_and_take_slot(cp, job)
        if grant is None:
            return Outcome.IN_FLIGHT
        if not grant:
            return Outcome.QUEUED
    return launch_and_pass_on(cp, job, claimed=True)


def launch_and_pass_on(cp: ControlPlane, job: Job, *, claimed: bool = False) -> Outcome:
    """Launch a job that holds a slot; if it ended meanwhile, offer its slot to queued jobs:
    the slot of a job that ends during its launch is given back by the launcher, once the
    instance it started is terminated (`control_plane.ended`)."""
    outcome = launch(cp, job, claimed=claimed)
    if outcome in (Outcome.ENDED, Outcome.MOVED_ON):
        admit_queued(cp)
    return outcome


def admit_queued(cp: ControlPlane, queued: Iterable[Job] | None = None) -> list[tuple[Job, Outcome]]:
    """Launch queued jobs (`queued`, or all read from the index) in line while slots are
    free, passing over the jobs of owners at their limit. The jobs offered a slot, each
    with its outcome."""
    at_limit: set[str] = set()
    outcomes = []
    for job in in_line(cp.jobs.active_jobs(JobStatus.QUEUED) if queued is None else queued):
        if job.owner in at_limit:
            continue
        grant = _claim_and_take_slot(cp, job)
        if grant is None:
            continue  # another launcher is launching it
        if grant is Grant.FULL:
            break
        if grant is Grant.OWNER_AT_LIMIT:
            at_limit.add(job.owner)
            continue
        outcomes.append((job, launch(cp, job, claimed=True)))
    return outcomes


def _claim_and_take_slot(cp: ControlPlane, job: Job) -> Grant | None:
    """The claim of the job's next attempt, then a slot for it; None if another launcher
    holds the claim.

    The claim is given back whenever no slot is taken, an error included: held, it would keep
    every other launcher from the job until its lease passes. A launcher that found no slot
    looks again once it has given the claim back: a slot freed meanwhile was offered on by a
    launcher that passed this job over as claimed, and nobody else would take it for the job.
    """
    attempt = job.attempt + 1
    limit = OwnerLimit(job.owner, cp.settings.max_running_jobs_per_owner)
    while True:
        if not claim_attempt(cp, job.job_id, attempt):
            return None
        try:
            grant = cp.slots.acquire(job.job_id, cp.settings.max_concurrent_jobs, limit)
        except Exception:
            cp.claims.release(job.job_id, attempt, cp.holder)
            raise
        if grant:
            return grant
        cp.claims.release(job.job_id, attempt, cp.holder)
        if not cp.slots.has_room(cp.settings.max_concurrent_jobs, limit):
            return grant
