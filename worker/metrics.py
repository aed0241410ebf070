"""The job's metrics, sent once at the end with PutMetricData (the instance has no EMF
agent): run time, outcome, and bytes copied when the engine reported them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from jobs import aws

logger = Logger(child=True)


class Metric(StrEnum):
    DURATION = "JobDuration"  # dimensions Command, Engine
    OUTCOME = "JobOutcome"  # dimension Outcome
    BYTES_COPIED = "BytesCopied"  # dimensions Command, Engine


def job_metrics(
    *, command: str, engine: str, outcome: str, duration_seconds: float, bytes_copied: int | None
) -> list[dict[str, Any]]:
    dimensions = [{"Name": "Command", "Value": command}, {"Name": "Engine", "Value": engine}]
    metrics: list[dict[str, Any]] = [
        {
            "MetricName": Metric.DURATION.value,
            "Dimensions": dimensions,
            "Value": duration_seconds,
            "Unit": "Seconds",
        },
        {
            "MetricName": Metric.OUTCOME.value,
            "Dimensions": [{"Name": "Outcome", "Value": outcome}],
            "Value": 1,
            "Unit": "Count",
        },
    ]
    if bytes_copied is not None:
        metrics.append(
            {
                "MetricName": Metric.BYTES_COPIED.value,
                "Dimensions": dimensions,
                "Value": bytes_copied,
                "Unit": "Bytes",
            }
        )
    return metrics


def publish(namespace: str, metrics: list[dict[str, Any]]) -> None:
    """Best effort: a lost data point must not change the job's outcome."""
    try:
        aws.client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=metrics)
    except (BotoCoreError, ClientError) as exc:
        logger.warning("metrics not sent", extra={"reason": type(exc).__name__})
