"""Admission: which waiting job gets a worker slot, and when.

A slot is an entry in the slot ledger's set, taken and given back idempotently; the
ledger keeps `max_concurrent_jobs`. Queued jobs are offered free slots oldest first
(`in_line`); a rule that weighs owners against each other belongs there and in `admit`.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_lambda_powertools.metrics import MetricUnit

from control_plane.context import ControlPlane
from control_plane.holdings import WAITING
from control_plane.launch import Outcome, launch
from control_plane.telemetry import Metric, logger, metrics
from jobs.record import Job
from jobs.states import JobStatus


def in_line(queued: Iterable[Job]) -> list[Job]:
    """The order in which queued jobs are offered a free slot: oldest first."""
    return sorted(queued, key=lambda job: (job.created_at, job.job_id))


def admit(cp: ControlPlane, job: Job) -> Outcome:
    """A `pending` or `queued` job: take a slot and launch it, or queue it."""
    if job.status not in WAITING:
        return Outcome.MOVED_ON
    if not _take_slot(cp, job):
        if job.status is JobStatus.QUEUED:
            return Outcome.QUEUED
        queued = cp.jobs.transition(
            job.job_id, [JobStatus.PENDING], JobStatus.QUEUED, only_if={"attempt": job.attempt}
        )
        if not queued.ok or queued.job is None:
            return Outcome.MOVED_ON
        metrics.add_metric(name=Metric.QUEUED, unit=MetricUnit.Count, value=1)
        logger.info("job queued: no free worker slot", extra={"job_id": job.job_id})
        job = queued.job
        # A slot freed between the refused acquire and the write above found no queued job.
        if not _take_slot(cp, job):
            return Outcome.QUEUED
    return launch(cp, job)


def admit_queued(cp: ControlPlane, queued: Iterable[Job] | None = None) -> list[Outcome]:
    """Launch queued jobs (`queued`, or all read from the index) in line while slots are free."""
    outcomes = []
    for job in in_line(cp.jobs.active_jobs(JobStatus.QUEUED) if queued is None else queued):
        if not _take_slot(cp, job):
            break
        outcomes.append(launch(cp, job))
    return outcomes


def _take_slot(cp: ControlPlane, job: Job) -> bool:
    return cp.slots.acquire(job.job_id, cp.settings.max_concurrent_jobs)
