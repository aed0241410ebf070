"""A worker's report, copied into its job's item.

The worker may write only its own report item (its key is the worker's caller id, which IAM
compares with `${aws:userid}`), so the instance a report comes from is the key's, never
anything the report says. Each report is applied with the conditions a worker's own write
used to carry: the job is still assigned to that instance and attempt, and in a status the
report may move it from. A report that does not apply (the job was cancelled, reassigned or
reaped meanwhile) changes nothing; the worker sees that on the job item.

Stream records may repeat, and a batch retried after a failure replays records already
applied; the reaper may apply a worker's latest report before the stream delivers older ones
(`catch_up`). So a report applies only if it is newer (a higher `seq`) than the last one of
the same instance applied to the job: an older one would take the job back (a checkpoint
that forgets a database, a heartbeat moved back in time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.conditions import Attr, ConditionBase
from botocore.exceptions import ClientError
from pydantic import ValidationError

from control_plane.telemetry import logger
from jobs import clock
from jobs.attempts import LostAttempt, loss_fields
from jobs.dynamo import error_code
from jobs.record import Job
from jobs.reports import REPORT_ATTRIBUTE, REPORTED_ATTRIBUTE, ReportKind, WorkerReport
from jobs.states import JobStatus, sources_of
from jobs.store import UNREADABLE_ITEM, JobStore, WriteResult
from jobs.worker_identity import instance_of, worker_user_id

# What an outcome may end: the statuses a worker's job can be in.
WORKER_HELD = frozenset({JobStatus.PROVISIONING, JobStatus.RUNNING, JobStatus.CANCELLING})


def relay(jobs: JobStore, role_id: str, key: str, image: Mapping[str, Any]) -> WriteResult | None:
    """A report item's change (its key and new image): the report applied, if it is one."""
    reported = read_report(key, image, role_id)
    if reported is None:
        return None
    try:
        return apply_report(jobs, *reported)
    except ClientError as exc:
        # A report the job item cannot take (it would pass the item size limit) would fail
        # the same way on every retry and hold up the stream shard's other records.
        if error_code(exc) != "ValidationException":
            raise
        logger.error(
            UNREADABLE_ITEM, extra={"item": "report", "instance_id": reported[0], "reason": str(exc)}
        )
    instance_id, report = reported
    if report.kind is ReportKind.BEAT:
        return None  # the next heartbeat comes anyway
    return _fail_unrecordable(jobs, instance_id, report)


def _fail_unrecordable(jobs: JobStore, instance_id: str, report: WorkerReport) -> WriteResult | None:
    """End the job of a report its item cannot take: its worker would wait for it and send it
    again for ever, and a checkpoint that is not recorded cannot be resumed from."""
    error = f"the worker's {report.kind} report does not fit in the job's item (DynamoDB's 400 KB item limit)"
    if report.checkpoint:
        error += (
            f": its checkpoint names {len(report.checkpoint)} databases; split the job with include_databases"
        )
    only_if = {"instance_id": instance_id, "attempt": report.attempt}
    try:
        return _end(jobs, report.job_id, JobStatus.FAILED, {"error": error}, only_if)
    except ClientError as exc:
        if error_code(exc) != "ValidationException":
            raise
        return None  # not even this fits: the reaper ends the job at its runtime limit


def _end(
    jobs: JobStore,
    job_id: str,
    status: JobStatus,
    fields: dict[str, Any],
    only_if: dict[str, Any],
    also: ConditionBase | None = None,
) -> WriteResult:
    """End the job in `status` from whichever status its worker holds it in, and wipe its
    credentials: also when the job was ended elsewhere, never when it was relaunched on
    another instance (`only_if` names the reporting instance and attempt)."""
    result = jobs.transition(
        job_id, sources_of(status) & WORKER_HELD, status, set_fields=fields, only_if=only_if, also=also
    )
    jobs.wipe_credentials(job_id, only_if=only_if)
    return result


def catch_up(jobs: JobStore, role_id: str, job: Job) -> WriteResult | None:
    """Apply the latest report of the job's instance, if the stream has not applied it yet
    (a backed-up launcher, a record given up on): what the reaper does before it takes a
    worker for lost. None when that instance has no report."""
    if not job.instance_id:
        return None
    key = worker_user_id(role_id, job.instance_id)
    item = jobs.report_item(key)
    return None if item is None else relay(jobs, role_id, key, item)


def read_report(key: str, image: Mapping[str, Any], role_id: str) -> tuple[str, WorkerReport] | None:
    """The reporting instance and its report, or None for an item no worker of this
    deployment wrote or one that does not parse: logged with the line every unreadable item
    of the table leaves, which a metric filter counts and an alarm watches."""
    instance_id = instance_of(key, role_id)
    if instance_id is None:
        logger.error(
            UNREADABLE_ITEM, extra={"item": "report", "reason": "the key is not a worker's caller id"}
        )
        return None
    try:
        return instance_id, WorkerReport.model_validate(image.get(REPORT_ATTRIBUTE))
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in error["loc"]) for error in exc.errors()})[:10]
        logger.error(UNREADABLE_ITEM, extra={"item": "report", "instance_id": instance_id, "errors": fields})
        return None


def apply_report(jobs: JobStore, instance_id: str, report: WorkerReport) -> WriteResult | None:
    """Copy one report into its job's item; the write's result (None for a wipe only)."""
    only_if = {"instance_id": instance_id, "attempt": report.attempt}
    # No later than now: the reaper counts the runtime limit from `started_at` and a worker's
    # silence from `heartbeat_at`, and a worker must not put either off by dating its reports
    # ahead. (Both are ISO times in the one format WorkerReport normalises them to.)
    now = clock.now_iso()
    at = min(report.at, now)
    newer = _newer_than_applied(instance_id, report.seq)
    fields: dict[str, Any] = {REPORTED_ATTRIBUTE: {"instance_id": instance_id, "seq": report.seq}}
    if report.progress is not None:
        fields["progress"] = report.progress.model_dump(mode="json")
    job_id = report.job_id
    if report.kind is ReportKind.START:
        fields |= {"started_at": min(report.started_at or at, now), "heartbeat_at": at}
        return jobs.transition(
            job_id,
            [JobStatus.PROVISIONING],
            JobStatus.RUNNING,
            set_fields=fields,
            only_if=only_if,
            also=newer,
        )
    if report.kind is ReportKind.BEAT:
        return jobs.update_active(job_id, fields | {"heartbeat_at": at}, only_if=only_if, also=newer)
    if report.kind is ReportKind.CHECKPOINT:
        checkpoint = fields | {"checkpoint": _checkpoint(report)}
        return jobs.update_active(job_id, checkpoint, only_if=only_if, also=newer)
    if report.kind is ReportKind.OUTCOME:
        assert report.status is not None  # WorkerReport requires it
        if report.error is not None:
            fields["error"] = report.error
        if report.exit_code is not None:
            fields["exit_code"] = report.exit_code
        return _end(jobs, job_id, report.status, fields, only_if, also=newer)
    return _hand_back(jobs, instance_id, report, fields, only_if, newer)


def _newer_than_applied(instance_id: str, seq: int) -> ConditionBase:
    """The job item's mark names another instance, or an older report of this one."""
    mark = REPORTED_ATTRIBUTE
    return Attr(mark).not_exists() | Attr(f"{mark}.instance_id").ne(instance_id) | Attr(f"{mark}.seq").lt(seq)


def _hand_back(
    jobs: JobStore,
    instance_id: str,
    report: WorkerReport,
    fields: dict[str, Any],
    only_if: dict[str, Any],
    newer: ConditionBase,
) -> WriteResult | None:
    """running -> provisioning without this instance: the control plane starts the next
    attempt (control_plane.retry). The earlier losses come from the item, not the worker."""
    assert report.loss_kind is not None and report.loss_reason is not None
    job = jobs.get(report.job_id)
    if job is None:
        return None
    loss = LostAttempt(
        attempt=report.attempt,
        kind=report.loss_kind,
        reason=report.loss_reason,
        at=report.at,
        instance_id=instance_id,
    )
    fields |= {**loss_fields(job.lost_attempts, loss), "checkpoint": _checkpoint(report)}
    return jobs.transition(
        report.job_id,
        [JobStatus.RUNNING],
        JobStatus.PROVISIONING,
        set_fields=fields,
        remove_fields=["instance_id"],
        only_if=only_if,  # whoever else records a loss also moves the job off this instance
        also=newer,
    )


def _checkpoint(report: WorkerReport) -> dict[str, Any]:
    return {name: entry.model_dump(mode="json") for name, entry in (report.checkpoint or {}).items()}
