"""The control plane's logger, metrics and metric names."""

from __future__ import annotations

from enum import StrEnum

from jobs.observability import service_logger, service_metrics

logger = service_logger()
metrics = service_metrics()


class Metric(StrEnum):
    LAUNCHED = "JobsLaunched"
    QUEUED = "JobsQueued"
    # Of those, queued because the owner held its MAX_RUNNING_JOBS_PER_OWNER slots.
    QUEUED_AT_OWNER_LIMIT = "JobsQueuedAtOwnerLimit"
    LAUNCH_FAILURES = "LaunchFailures"  # dimension ErrorCode
    LAUNCH_LATENCY = "LaunchLatency"  # created -> provisioning, first attempt
    # Stream records the launcher gave up on are counted by the DLQ's own depth metric
    # (ApproximateNumberOfMessagesVisible: dashboard and alarm), not by the launcher.
