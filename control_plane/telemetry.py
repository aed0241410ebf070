"""The control plane's logger, metrics and metric names."""

from __future__ import annotations

from enum import StrEnum

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()


class Metric(StrEnum):
    LAUNCHED = "JobsLaunched"
    QUEUED = "JobsQueued"
    LAUNCH_FAILURES = "LaunchFailures"  # dimension ErrorCode
    LAUNCH_LATENCY = "LaunchLatency"  # created -> provisioning, first attempt
    # Stream records the launcher gave up on are counted by the DLQ's own depth metric
    # (ApproximateNumberOfMessagesVisible: dashboard and alarm), not by the launcher.
