"""Admission and launch: the plain functions behind the launcher, also called by the reaper.

Why nothing is launched twice, whatever the delivery order or the number of launchers:
- a slot is an entry in the slot ledger's set, taken and given back idempotently;
- launching attempt N of a job first takes that attempt's claim (a conditional write), so
  one launcher calls RunInstances per attempt, with ClientToken "<job id>:<N>" as EC2's
  own guard; a launcher that takes over an expired claim adopts the instance its
  predecessor may have left before starting one;
- the job moves to `provisioning` only if it still is where the launcher found it
  (status and attempt); if not, the instance just started is terminated.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from jobs import clock, instances
from jobs.instances import Instance, LaunchError, LaunchRequest
from jobs.record import Job
from jobs.slots import LaunchClaims, SlotLedger
from jobs.states import ACTIVE, JobStatus
from jobs.store import JobStore
from services.launcher.settings import Settings

logger = Logger()
metrics = Metrics()

METRIC_LAUNCHED = "JobsLaunched"
METRIC_QUEUED = "JobsQueued"
METRIC_LAUNCH_FAILURES = "LaunchFailures"  # dimension ErrorCode
METRIC_LAUNCH_LATENCY = "LaunchLatency"  # created -> provisioning, first attempt
# Stream records the launcher gave up on are counted by the DLQ's own depth metric
# (ApproximateNumberOfMessagesVisible: dashboard and alarm), not by the launcher.

WAITING = (JobStatus.PENDING, JobStatus.QUEUED)
# A job in these statuses has (or is being given) an instance and keeps its slot.
HOLDS_INSTANCE = (JobStatus.PROVISIONING, JobStatus.RUNNING, JobStatus.CANCELLING)


class Outcome(StrEnum):
    LAUNCHED = "launched"  # an instance runs for the job's new attempt
    QUEUED = "queued"  # no free slot
    IN_FLIGHT = "in_flight"  # another launcher holds this attempt
    MOVED_ON = "moved_on"  # the job is no longer where the caller saw it
    ENDED = "ended"  # the job ended while it was being launched; its instance is terminated
    FAILED = "failed"  # a permanent EC2 error, or no capacity too often; the job failed with its code
    NO_CAPACITY = "no_capacity"  # no subnet or type had capacity; counted, tried again later


@dataclass(frozen=True)
class LaunchContext:
    settings: Settings
    store: JobStore
    slots: SlotLedger
    claims: LaunchClaims
    # Names this launcher in launch claims.
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def from_settings(cls, settings: Settings) -> LaunchContext:
        table = settings.jobs_table_name
        return cls(settings, JobStore(table), SlotLedger(table), LaunchClaims(table))


@dataclass(frozen=True)
class StreamChange:
    """What the launcher needs from one stream record."""

    event_name: str
    job_id: str
    old_status: JobStatus | None
    new_status: JobStatus | None
    instance_id: str | None  # from the new image

    @classmethod
    def from_images(
        cls, event_name: str, keys: dict[str, Any], old: dict[str, Any], new: dict[str, Any]
    ) -> StreamChange:
        return cls(
            event_name=event_name,
            job_id=str(keys["job_id"]),
            old_status=_status(old),
            new_status=_status(new),
            instance_id=str(new["instance_id"]) if new.get("instance_id") else None,
        )


def handle_change(ctx: LaunchContext, change: StreamChange) -> None:
    """React to one filtered stream record. Records may repeat or come out of order, so
    the job is read afresh and every step is conditional."""
    if change.event_name == "INSERT" and change.new_status is JobStatus.PENDING:
        job = ctx.store.get(change.job_id)
        if job is not None and job.status in WAITING:
            admit(ctx, job)
    elif (
        change.event_name == "MODIFY"
        and change.old_status in ACTIVE
        and change.new_status is not None
        and change.new_status.is_terminal
    ):
        job_ended(ctx, change.job_id, change.instance_id)


def admit(ctx: LaunchContext, job: Job) -> Outcome:
    """A `pending` or `queued` job: take a slot and launch it, or queue it."""
    if job.status not in WAITING:
        return Outcome.MOVED_ON
    if not ctx.slots.acquire(job.job_id, ctx.settings.max_concurrent_jobs):
        if job.status is JobStatus.QUEUED:
            return Outcome.QUEUED
        queued = ctx.store.transition(
            job.job_id, [JobStatus.PENDING], JobStatus.QUEUED, only_if={"attempt": job.attempt}
        )
        if not queued.ok or queued.job is None:
            return Outcome.MOVED_ON
        metrics.add_metric(name=METRIC_QUEUED, unit=MetricUnit.Count, value=1)
        logger.info("job queued: no free worker slot", extra={"job_id": job.job_id})
        job = queued.job
        # A slot freed between the refused acquire and the write above found no queued job.
        if not ctx.slots.acquire(job.job_id, ctx.settings.max_concurrent_jobs):
            return Outcome.QUEUED
    return launch(ctx, job)


def launch_queued(ctx: LaunchContext, queued: Iterable[Job] | None = None) -> list[Outcome]:
    """Launch queued jobs (`queued`, or all read from the index), oldest first, while slots
    are free."""
    outcomes = []
    for job in ctx.store.active_jobs(JobStatus.QUEUED) if queued is None else queued:
        if not ctx.slots.acquire(job.job_id, ctx.settings.max_concurrent_jobs):
            break
        outcomes.append(launch(ctx, job))
    return outcomes


def job_ended(ctx: LaunchContext, job_id: str, instance_id: str | None) -> None:
    """A job reached a terminal status: terminate its instance, give the slot back, and
    hand free slots to queued jobs.

    The worker writes the outcome as its last act and then terminates itself; terminating
    here as well (idempotent) means the freed slot never has two live instances on it, and
    a cancelled launch's instance stops at once.
    """
    if instance_id:
        instances.terminate(instance_id)
        logger.info(
            "terminated the ended job's instance", extra={"job_id": job_id, "instance_id": instance_id}
        )
    ctx.slots.release(job_id)
    launch_queued(ctx)


def launch(ctx: LaunchContext, job: Job) -> Outcome:
    """Start the next attempt of a job that holds a slot: a `pending`/`queued` job, or a
    `provisioning` one the reaper relaunches (its old instance already terminated)."""
    attempt = job.attempt + 1
    sources = WAITING if job.status in WAITING else (JobStatus.PROVISIONING,)
    if not ctx.claims.claim(
        job.job_id,
        attempt,
        ctx.holder,
        now_epoch=clock.epoch(clock.now()),
        lease_seconds=ctx.settings.launch_lease_seconds,
    ):
        return Outcome.IN_FLIGHT
    try:
        # Read after the claim: what the caller saw may be stale (a duplicate record).
        current = ctx.store.get(job.job_id)
        if current is None or current.status not in sources or current.attempt != job.attempt:
            if current is None or current.status.is_terminal:
                ctx.slots.release(job.job_id)
            return Outcome.MOVED_ON
        instance = instances.find_attempt(ctx.settings.managed_by, job.job_id, attempt)
        if instance is None:
            try:
                instance = instances.run(_request(ctx.settings, current, attempt))
            except LaunchError as error:
                return _launch_failed(ctx, current, attempt, sources, error)
        else:
            logger.info(
                "adopting the instance of an interrupted launch",
                extra={"job_id": job.job_id, "instance_id": instance.instance_id, "attempt": attempt},
            )
        return _record_launch(ctx, current, attempt, sources, instance)
    except Exception:
        # Let a redelivery (or the reaper) try this attempt again at once.
        ctx.claims.release(job.job_id, attempt, ctx.holder)
        raise


def _request(settings: Settings, job: Job, attempt: int) -> LaunchRequest:
    return LaunchRequest(
        job_id=job.job_id,
        attempt=attempt,
        managed_by=settings.managed_by,
        project=settings.project_tag,
        launch_template_id=settings.launch_template_id,
        launch_template_version=settings.launch_template_version,
        instance_types=settings.instance_types_for(job.options.estimated_size_bytes),
        subnet_ids=settings.subnets,
        user_data=settings.user_data(job.job_id),
    )


def _record_launch(
    ctx: LaunchContext, job: Job, attempt: int, sources: tuple[JobStatus, ...], instance: Instance
) -> Outcome:
    launched_at = clock.now_iso()
    result = ctx.store.transition(
        job.job_id,
        sources,
        JobStatus.PROVISIONING,
        set_fields={
            "instance_id": instance.instance_id,
            "instance_type": instance.instance_type,
            "attempt": attempt,
            "launched_at": launched_at,
        },
        only_if={"attempt": job.attempt},
    )
    log = {"job_id": job.job_id, "instance_id": instance.instance_id, "attempt": attempt}
    if result.ok:
        metrics.add_metric(name=METRIC_LAUNCHED, unit=MetricUnit.Count, value=1)
        if attempt == 1:
            latency = clock.parse_iso(launched_at) - clock.parse_iso(job.created_at)
            metrics.add_metric(
                name=METRIC_LAUNCH_LATENCY, unit=MetricUnit.Seconds, value=latency.total_seconds()
            )
        logger.info("worker instance launched", extra={**log, "instance_type": instance.instance_type})
        return Outcome.LAUNCHED
    now = result.job
    if now is not None and now.instance_id == instance.instance_id and now.attempt == attempt:
        return Outcome.LAUNCHED  # a launcher that took over the claim recorded it already
    instances.terminate(instance.instance_id)
    if now is None or now.status.is_terminal:
        ctx.slots.release(job.job_id)
        logger.info("job ended during its launch: instance terminated, slot released", extra=log)
        return Outcome.ENDED
    # What the job had become, so a lost race can be told apart from an impossible state.
    found = {
        "found_status": now.status.value,
        "found_attempt": now.attempt,
        "found_instance_id": now.instance_id,
    }
    logger.warning("job changed during its launch: instance terminated", extra={**log, **found})
    return Outcome.MOVED_ON


def _launch_failed(
    ctx: LaunchContext, job: Job, attempt: int, sources: tuple[JobStatus, ...], error: LaunchError
) -> Outcome:
    log = {"job_id": job.job_id, "attempt": attempt, "error_code": error.code}
    with single_metric(
        name=METRIC_LAUNCH_FAILURES,
        unit=MetricUnit.Count,
        value=1,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        metric.add_dimension(name="ErrorCode", value=error.code)
    if error.permanent:
        ctx.store.transition(
            job.job_id,
            sources,
            JobStatus.FAILED,
            set_fields={"error": f"Could not start a worker instance: EC2 error {error.code}"},
            only_if={"attempt": job.attempt},
        )
        # Whether this write or another ended the job, it needs no slot any more.
        current = ctx.store.get(job.job_id, include_expired=True)
        if current is None or current.status.is_terminal:
            ctx.slots.release(job.job_id)
        logger.error("launch failed permanently: job failed", extra={**log, "error": error.message})
        return Outcome.FAILED
    if error.no_capacity:
        return _no_capacity(ctx, job, attempt, error, log)
    logger.warning("launch failed, will be retried", extra={**log, "error": error.message})
    raise error


def _no_capacity(
    ctx: LaunchContext, job: Job, attempt: int, error: LaunchError, log: dict[str, Any]
) -> Outcome:
    """No subnet or type had capacity: count it on the job, and fail the job at the limit.

    The count goes with the write that puts a waiting job back in line (a slot release or
    the reaper tries it again) or keeps a relaunched one `provisioning` (the reaper's next
    pass tries again). Each write is conditional on the job as read (status, attempt, last
    write) and the claim is given back only after it, so no failure is counted twice.
    """
    failures = job.capacity_failures + 1
    fields: dict[str, Any] = {"capacity_failures": failures}
    guard = {"attempt": job.attempt, "updated_at": job.updated_at}
    exhausted = failures >= ctx.settings.max_capacity_failures
    if exhausted:
        fields["error"] = _no_capacity_error(ctx.settings, job, failures, error)
        result = ctx.store.transition(
            job.job_id, [job.status], JobStatus.FAILED, set_fields=fields, only_if=guard
        )
    elif job.status is JobStatus.PENDING:
        result = ctx.store.transition(
            job.job_id, [JobStatus.PENDING], JobStatus.QUEUED, set_fields=fields, only_if=guard
        )
    else:
        result = ctx.store.update_active(job.job_id, fields, statuses=[job.status], only_if=guard)
    ctx.claims.release(job.job_id, attempt, ctx.holder)
    now = result.job
    # Only a job with an instance (a relaunch in progress) keeps its slot; a waiting or
    # ended one gives it back.
    if now is None or now.status not in HOLDS_INSTANCE:
        ctx.slots.release(job.job_id)
    log = {**log, "capacity_failures": failures}
    if not result.ok:
        logger.info("no EC2 capacity, and the job changed meanwhile: not counted", extra=log)
        return Outcome.MOVED_ON
    if exhausted:
        logger.error("no EC2 capacity, too many times: job failed", extra=log)
        return Outcome.FAILED
    logger.warning("no EC2 capacity in any subnet or type: will try again", extra=log)
    return Outcome.NO_CAPACITY


def _no_capacity_error(settings: Settings, job: Job, failures: int, error: LaunchError) -> str:
    types = ", ".join(settings.instance_types_for(job.options.estimated_size_bytes))
    subnets = ", ".join(settings.subnets) or "the launch template's subnet"
    return f"No EC2 capacity for {types} in {subnets} after {failures} attempts: EC2 error {error.code}"


def _status(image: dict[str, Any]) -> JobStatus | None:
    value = image.get("status")
    try:
        return JobStatus(value) if value else None
    except ValueError:
        return None
