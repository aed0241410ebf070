"""Launch: start the next attempt of a job that holds a slot.

Why nothing is launched twice, whatever the delivery order or the number of launchers:
- launching attempt N of a job first takes that attempt's claim (a conditional write), so
  one launcher calls RunInstances per attempt, with ClientToken "<job id>:<N>" as EC2's
  own guard; a launcher that takes over an expired claim adopts the instance its
  predecessor may have left before starting one;
- the job moves to `provisioning` only if it still is where the launcher found it
  (status and attempt); if not, the instance just started is terminated.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from control_plane.context import ControlPlane
from control_plane.holdings import WAITING
from control_plane.settings import LaunchSettings
from control_plane.settle import settle
from control_plane.telemetry import Metric, logger, metrics
from control_plane.user_data import user_data
from jobs import clock
from jobs.instances import Instance, LaunchError, LaunchRequest
from jobs.record import INSTANCE_CREDENTIALS_ATTRIBUTE, Job
from jobs.states import JobStatus
from jobs.worker_identity import worker_user_id


class Outcome(StrEnum):
    LAUNCHED = "launched"  # an instance runs for the job's new attempt
    QUEUED = "queued"  # no free slot
    IN_FLIGHT = "in_flight"  # another launcher holds this attempt
    MOVED_ON = "moved_on"  # the job is no longer where the caller saw it
    ENDED = "ended"  # the job ended while it was being launched; its instance is terminated
    FAILED = "failed"  # a permanent EC2 error, or no capacity too often; the job failed with its code
    NO_CAPACITY = "no_capacity"  # no subnet or type had capacity; counted, tried again later


def launch(cp: ControlPlane, job: Job, *, claimed: bool = False) -> Outcome:
    """Start the next attempt of a job that holds a slot: a `pending`/`queued` job, or a
    `provisioning` one the reaper relaunches (its old instance already terminated).
    `claimed`: this launcher took the attempt's claim already (before the slot, on admission)."""
    attempt = job.attempt + 1
    sources = WAITING if job.status in WAITING else (JobStatus.PROVISIONING,)
    if not claimed and not claim_attempt(cp, job.job_id, attempt):
        return Outcome.IN_FLIGHT
    try:
        # Read after the claim: what the caller saw may be stale (a duplicate record).
        current = cp.jobs.get(job.job_id)
        if current is None or current.status not in sources or current.attempt != job.attempt:
            settle(cp, job.job_id, job.owner, current)
            return Outcome.MOVED_ON
        instance = cp.fleet.find_attempt(job.job_id, attempt)
        if instance is None:
            try:
                instance = cp.fleet.launch(_request(cp.settings, current, attempt))
            except LaunchError as error:
                return _launch_failed(cp, current, attempt, sources, error)
        else:
            logger.info(
                "adopting the instance of an interrupted launch",
                extra={"job_id": job.job_id, "instance_id": instance.instance_id, "attempt": attempt},
            )
        return _record_launch(cp, current, attempt, sources, instance)
    except Exception:
        # Let a redelivery (or the reaper) try this attempt again at once.
        cp.claims.release(job.job_id, attempt, cp.holder)
        raise


def claim_attempt(cp: ControlPlane, job_id: str, attempt: int) -> bool:
    """Take (or renew, for this launcher) the claim of launching `attempt` of the job."""
    return cp.claims.claim(
        job_id,
        attempt,
        cp.holder,
        now_epoch=clock.epoch(clock.now()),
        lease_seconds=cp.settings.launch_lease_seconds,
    )


def _request(settings: LaunchSettings, job: Job, attempt: int) -> LaunchRequest:
    return LaunchRequest(
        job_id=job.job_id,
        attempt=attempt,
        project=settings.project_tag,
        launch_template_id=settings.launch_template_id,
        launch_template_version=settings.launch_template_version,
        instance_types=settings.instance_types_for(job.options.estimated_size_bytes),
        subnet_ids=settings.subnets,
        user_data=user_data(settings, job.job_id),
        markets=settings.markets,
    )


def _record_launch(
    cp: ControlPlane, job: Job, attempt: int, sources: tuple[JobStatus, ...], instance: Instance
) -> Outcome:
    launched_at = clock.now_iso()
    fields: dict[str, Any] = {
        "instance_id": instance.instance_id,
        "instance_type": instance.instance_type,
        "capacity": instance.market.value,
        "attempt": attempt,
        "max_attempts": cp.settings.max_launch_attempts,
        "launched_at": launched_at,
    }
    bound = _credentials_for(cp, job.job_id, instance.instance_id)
    if bound is not None:
        fields[INSTANCE_CREDENTIALS_ATTRIBUTE] = bound
    if cp.job_logs is not None:
        # Before the write that gives the instance its credentials (it starts the job only
        # then): from here on this instance alone may write the job's logs.
        cp.job_logs.prepare(job.job_id, worker_user_id(cp.settings.worker_role_id, instance.instance_id))
    result = cp.jobs.transition(
        job.job_id, sources, JobStatus.PROVISIONING, set_fields=fields, only_if={"attempt": job.attempt}
    )
    log = {"job_id": job.job_id, "instance_id": instance.instance_id, "attempt": attempt}
    if result.ok:
        metrics.add_metric(name=Metric.LAUNCHED, unit=MetricUnit.Count, value=1)
        if attempt == 1:
            latency = clock.parse_iso(launched_at) - clock.parse_iso(job.created_at)
            metrics.add_metric(
                name=Metric.LAUNCH_LATENCY, unit=MetricUnit.Seconds, value=latency.total_seconds()
            )
        logger.info(
            "worker instance launched",
            extra={**log, "instance_type": instance.instance_type, "capacity": instance.market.value},
        )
        return Outcome.LAUNCHED
    now = result.job
    if now is not None and now.instance_id == instance.instance_id and now.attempt == attempt:
        return Outcome.LAUNCHED  # a launcher that took over the claim recorded it already
    settle(cp, job.job_id, job.owner, now, instances=[instance.instance_id])
    if now is None or now.status.is_terminal:
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


def _credentials_for(cp: ControlPlane, job_id: str, instance_id: str) -> bytes | None:
    """The job's credentials re-encrypted for this instance alone (the key policy lets a
    worker decrypt only what names its own instance), written with the launch."""
    if cp.keys is None:
        return None
    ciphertext = cp.jobs.get_credentials(job_id)
    if ciphertext is None:
        return None  # the job ended meanwhile: the transition below will not happen either
    return cp.keys.bind_to_instance(job_id, ciphertext, cp.settings.instance_arn(instance_id))


def _launch_failed(
    cp: ControlPlane, job: Job, attempt: int, sources: tuple[JobStatus, ...], error: LaunchError
) -> Outcome:
    log = {"job_id": job.job_id, "attempt": attempt, "error_code": error.code}
    with single_metric(
        name=Metric.LAUNCH_FAILURES,
        unit=MetricUnit.Count,
        value=1,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        metric.add_dimension(name="ErrorCode", value=error.code)
    if error.permanent:
        cp.jobs.transition(
            job.job_id,
            sources,
            JobStatus.FAILED,
            set_fields={"error": f"Could not start a worker instance: EC2 error {error.code}"},
            only_if={"attempt": job.attempt},
        )
        # Whether this write or another ended the job, settle it as it is now.
        settle(cp, job.job_id, job.owner, cp.jobs.get(job.job_id, include_expired=True))
        logger.error("launch failed permanently: job failed", extra={**log, "error": error.message})
        return Outcome.FAILED
    if error.no_capacity:
        return _no_capacity(cp, job, attempt, error, log)
    logger.warning("launch failed, will be retried", extra={**log, "error": error.message})
    raise error


def _no_capacity(
    cp: ControlPlane, job: Job, attempt: int, error: LaunchError, log: dict[str, Any]
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
    exhausted = failures >= cp.settings.max_capacity_failures
    if exhausted:
        fields["error"] = _no_capacity_error(cp.settings, job, failures, error)
        result = cp.jobs.transition(
            job.job_id, [job.status], JobStatus.FAILED, set_fields=fields, only_if=guard
        )
    elif job.status is JobStatus.PENDING:
        result = cp.jobs.transition(
            job.job_id, [JobStatus.PENDING], JobStatus.QUEUED, set_fields=fields, only_if=guard
        )
    else:
        result = cp.jobs.update_active(job.job_id, fields, statuses=[job.status], only_if=guard)
    cp.claims.release(job.job_id, attempt, cp.holder)
    # A waiting or ended job gives its slot back; a relaunch in progress keeps it.
    settle(cp, job.job_id, job.owner, result.job)
    log = {**log, "capacity_failures": failures}
    if not result.ok:
        logger.info("no EC2 capacity, and the job changed meanwhile: not counted", extra=log)
        return Outcome.MOVED_ON
    if exhausted:
        logger.error("no EC2 capacity, too many times: job failed", extra=log)
        return Outcome.FAILED
    logger.warning("no EC2 capacity in any subnet or type: will try again", extra=log)
    return Outcome.NO_CAPACITY


def _no_capacity_error(settings: LaunchSettings, job: Job, failures: int, error: LaunchError) -> str:
    types = ", ".join(settings.instance_types_for(job.options.estimated_size_bytes))
    subnets = ", ".join(settings.subnets) or "the launch template's subnet"
    return f"No EC2 capacity for {types} in {subnets} after {failures} attempts: EC2 error {error.code}"
