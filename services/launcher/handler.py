"""Launcher Lambda: DynamoDB stream batches (filtered by `services.launcher.filters`) in,
partial batch response out. A record that raises is reported failed and redelivered;
one that keeps failing ends in the event source mapping's on-failure destination.

Records may repeat or come out of order: the control plane reads the job afresh and
every step is conditional."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from control_plane.admission import admit
from control_plane.changes import Change, StreamChange, classify
from control_plane.context import ControlPlane
from control_plane.ended import job_ended
from control_plane.holdings import WAITING
from control_plane.reports import relay
from control_plane.retry import after_loss
from control_plane.telemetry import logger, metrics
from jobs.observability import traced
from services.launcher.settings import Settings

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@cache
def control_plane() -> ControlPlane:
    return ControlPlane.on_aws(Settings.from_environment())


def handle_change(cp: ControlPlane, change: StreamChange) -> None:
    kind = classify(change)
    if kind is Change.NEW_JOB:
        job = cp.jobs.get(change.job_id)
        if job is not None and job.status in WAITING:
            admit(cp, job)
    elif kind is Change.JOB_ENDED:
        job_ended(cp, change.job_id, change.owner, change.instance_id)
    elif kind is Change.ATTEMPT_LOST:
        after_loss(cp, change.job_id)
    elif kind is Change.WORKER_REPORT:
        relay(cp.jobs, cp.settings.worker_role_id, change.job_id, change.new_image or {})


def handle_record(record: DynamoDBRecord, cp: ControlPlane) -> None:
    stream = record.dynamodb
    if stream is None or record.event_name is None:
        return
    change = StreamChange.from_images(record.event_name.name, stream.keys, stream.old_image, stream.new_image)
    logger.append_keys(job_id=change.job_id)
    try:
        handle_change(cp, change)
    finally:
        logger.remove_keys(["job_id"])


def record_handler(record: DynamoDBRecord) -> None:
    handle_record(record, control_plane())


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
