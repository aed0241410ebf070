"""Reaper Lambda: run by an EventBridge schedule; one pass over the unfinished jobs and
the instances of this deployment."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from control_plane.context import ControlPlane
from control_plane.telemetry import logger, metrics
from jobs.observability import traced
from services.reaper.logic import reap
from services.reaper.settings import Settings


@cache
def settings() -> Settings:
    return Settings.from_environment()


@cache
def control_plane() -> ControlPlane:
    return ControlPlane.on_aws(settings())


@logger.inject_lambda_context
@metrics.log_metrics
@traced
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    report = reap(control_plane(), settings())
    summary = {
        "items_read": report.items_read,
        "active": dict(report.active),
        "running_instances": report.running_instances,
        "actions": len(report.actions),
        "errors": report.errors,
    }
    logger.info("reaper pass done", extra=summary)
    return summary
