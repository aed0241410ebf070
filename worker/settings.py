"""The worker's settings, from the environment that the instance's user-data exports.

Endpoints are not settings: boto3 reads AWS_REGION and AWS_ENDPOINT_URL[_<SERVICE>], the
metadata client AWS_EC2_METADATA_SERVICE_ENDPOINT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field

from jobs.settings import HostPolicySettings
from worker.serendb import DEFAULT_CONSOLE_URL

# Heartbeats every 30 s are 120 writes an hour; progress gets what is left of this budget.
DEFAULT_ITEM_WRITES_PER_HOUR = 130


class Settings(HostPolicySettings):
    jobs_table_name: str = Field(min_length=3)
    worker_log_group: str = Field(min_length=1)
    # The role's unique id: with the instance id, the key of the report item this worker
    # alone may write (jobs.worker_identity).
    worker_role_id: str = Field(pattern=r"^AROA[A-Z0-9]{4,128}$")
    # How long the worker waits for the control plane to apply a report it must know the
    # fate of (the start, a checkpoint, the outcome, a hand-back), checking every poll.
    report_wait_seconds: float = Field(default=60, gt=0, le=900)
    report_poll_seconds: float = Field(default=0.1, gt=0, le=5)
    heartbeat_interval_seconds: float = Field(default=30, gt=0, le=600)
    # Progress reaches the item at most this often, and only within the write budget.
    progress_min_interval_seconds: float = Field(default=5, ge=0, le=600)
    item_writes_per_hour: int = Field(default=DEFAULT_ITEM_WRITES_PER_HOUR, ge=1, le=100_000)
    # auto: seren-replicator when its binary is installed and no private range is allowed.
    engine: Literal["auto", "pg", "seren-replicator"] = "auto"
    # How long the engine may take to exit after SIGTERM before its process group is killed.
    engine_stop_grace_seconds: float = Field(default=20, ge=0, le=600)
    # The operator's cap on one job's run time, on top of the job's own job_timeout_seconds.
    max_job_runtime_seconds: int | None = Field(default=None, ge=1)
    metrics_namespace: str = Field(
        default="SerenReplication",
        min_length=1,
        validation_alias=AliasChoices("METRICS_NAMESPACE", "POWERTOOLS_METRICS_NAMESPACE"),
    )
    # Where the engine's redacted output is also kept on the instance (JOB_ID.log).
    local_log_dir: Path = Path("/var/log/seren-replicator")
    log_flush_interval_seconds: float = Field(default=2, gt=0, le=60)
    # botocore attempts (with backoff) per write: few for heartbeats, which come again
    # anyway, many for the writes that must land (running, the outcome).
    # How often the worker reads IMDS for a Spot interruption notice (two minutes' warning).
    spot_notice_poll_seconds: float = Field(default=5, gt=0, le=60)
    heartbeat_write_max_attempts: int = Field(default=3, ge=1, le=20)
    status_write_max_attempts: int = Field(default=10, ge=1, le=20)
    # The SerenDB console API, for jobs whose target is a SerenDB project.
    seren_console_url: str = Field(default=DEFAULT_CONSOLE_URL, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    seren_console_timeout_seconds: float = Field(default=30, gt=0, le=300)


def environment_variables() -> frozenset[str]:
    """The variable names this model reads (what user-data or the image must set)."""
    return frozenset({name.upper() for name in Settings.model_fields} | {"POWERTOOLS_METRICS_NAMESPACE"})
