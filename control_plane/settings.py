"""The control plane's settings, read once per cold start from the environment: what
admission and launch need. The launcher's settings are these; the reaper's add its
thresholds (it launches too).

Terraform sets exactly these variables (plus POWERTOOLS_*, which Powertools reads itself,
and AWS_REGION, which Lambda sets).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field

from jobs.crypto import instance_arn
from jobs.instances import Market
from jobs.settings import HostPolicySettings, MaxJobRuntimeSeconds
from jobs.spec import MAX_JOB_TIMEOUT_SECONDS

GIB = 1024**3
# The earlier system's choice by estimated size: (size below which, instance type); None = any size.
DEFAULT_INSTANCE_TYPE_BY_SIZE: list[tuple[int | None, str]] = [
    (10 * GIB, "t3.medium"),
    (100 * GIB, "c5.large"),
    (1024 * GIB, "c5.2xlarge"),
    (None, "c5.4xlarge"),
]
# Variables Lambda provides itself: read here, never set by Terraform.
RUNTIME_VARIABLES = frozenset({"AWS_REGION"})


class LaunchSettings(HostPolicySettings):
    jobs_table_name: str = Field(min_length=3)
    aws_region: str = Field(min_length=1)
    max_concurrent_jobs: int = Field(default=10, ge=1, le=1000)
    # Slots one key owner may hold at once: its further jobs wait `queued` even when slots
    # are free, so one owner's long jobs cannot hold every slot.
    max_running_jobs_per_owner: int = Field(default=2, ge=1, le=1000)
    launch_template_id: str = Field(min_length=1)
    launch_template_version: str = "$Latest"
    # Comma-separated, tried in order; empty: the launch template's network settings.
    subnet_ids: str = ""
    # When the job gives no estimated size.
    default_instance_type: str = "c5.large"
    # JSON list of [bytes below which, type] pairs, ascending; a null bound matches any size.
    instance_type_by_size: list[tuple[int | None, str]] = Field(
        default_factory=lambda: list(DEFAULT_INSTANCE_TYPE_BY_SIZE)
    )
    # Comma-separated, tried after the chosen type when EC2 has no capacity for it.
    fallback_instance_types: str = ""
    # Spot workers cost a fraction of on-demand ones; a lost Spot instance is a retried
    # attempt (control_plane.retry). spot-then-on-demand asks for Spot across every type and
    # subnet first, then on-demand.
    worker_capacity: Literal["on-demand", "spot", "spot-then-on-demand"] = "spot-then-on-demand"
    # The worker's engine (worker.engines.select_engine): auto runs seren-replicator where the
    # image has it, unless private ranges are allowed; pg keeps every guarantee everywhere.
    worker_engine: Literal["auto", "pg", "seren-replicator"] = "auto"
    project_tag: str = "seren-replication"
    # A launcher that claimed an attempt and went silent this long is presumed dead; keep it
    # well above the launcher's Lambda timeout.
    launch_lease_seconds: int = Field(default=300, ge=30)
    # Launches of one job that may find no capacity in any subnet or type before it fails;
    # each slot release and reaper pass retries it, so without a bound it could wait forever.
    max_capacity_failures: int = Field(default=12, ge=1, le=1000)
    # Attempts of one job, each on a new instance, before it fails: the first, and one per
    # attempt lost to the infrastructure (a worker that never started, an instance gone or
    # interrupted, a heartbeat lost). Engine errors are never retried.
    max_launch_attempts: int = Field(default=3, ge=1, le=10)
    # Handed to the worker through user-data (all non-secret: control_plane/user_data.py).
    # Each job's logs go to a group of its own under this name (jobs.job_logs), which the
    # launch creates with this retention and data key.
    worker_log_group: str = Field(min_length=1)
    job_log_retention_days: int = Field(default=7, ge=1)
    job_log_kms_key_id: str = Field(default="", pattern=r"^(arn:[a-z-]+:kms:[a-z0-9-]+:\d{12}:key/.+)?$")
    # The worker role's unique id (AROA...): a worker's caller id is `<role id>:<instance id>`
    # (jobs.worker_identity), the name of what that worker alone may write.
    worker_role_id: str = Field(pattern=r"^AROA[A-Z0-9]{4,128}$")
    heartbeat_interval_seconds: int = Field(default=30, ge=1)
    max_job_runtime_seconds: MaxJobRuntimeSeconds = MAX_JOB_TIMEOUT_SECONDS
    # The host policy's switches (HostPolicySettings) are handed on too.
    # The worker publishes its job metrics here; the same namespace the functions use.
    metrics_namespace: str = Field(
        default="SerenReplication", validation_alias=AliasChoices("POWERTOOLS_METRICS_NAMESPACE")
    )
    # A worker that cannot terminate its instance powers it off (the launch template's
    # shutdown behaviour terminates it). Off only where the "instance" is a developer's
    # machine: the local cloud.
    worker_shutdown_if_not_terminated: bool = True
    # The SerenDB console API the worker prepares project targets through.
    seren_console_url: str = Field(default="https://api.serendb.com", min_length=1)
    # ARN of the credentials key: each launch re-encrypts the job's credentials for the
    # instance it started (the ARN also names the account and partition of instance ARNs).
    kms_key_id: str = Field(default="", pattern=r"^(arn:[a-z-]+:kms:[a-z0-9-]+:\d{12}:key/.+)?$")

    def instance_arn(self, instance_id: str) -> str:
        account = self.kms_key_id.split(":")[4]
        return instance_arn(self.aws_region, account, instance_id)

    @property
    def log_group_arn_prefix(self) -> str:
        """`arn:<partition>:logs:<region>:<account>:log-group:`, from the credentials key's ARN."""
        _, partition, _, _, account, _ = self.kms_key_id.split(":", 5)
        return f"arn:{partition}:logs:{self.aws_region}:{account}:log-group:"

    @property
    def subnets(self) -> tuple[str, ...]:
        return _split(self.subnet_ids)

    @property
    def markets(self) -> tuple[Market, ...]:
        """The purchase options to try, in order."""
        if self.worker_capacity == "spot-then-on-demand":
            return (Market.SPOT, Market.ON_DEMAND)
        return (Market(self.worker_capacity),)

    @property
    def fallback_types(self) -> tuple[str, ...]:
        return _split(self.fallback_instance_types)

    @property
    def managed_by(self) -> str:
        """The `ManagedBy` tag value of this deployment's instances: its table name is unique
        per account and region, so two deployments never take each other's instances."""
        return self.jobs_table_name

    def instance_types_for(self, estimated_size_bytes: int | None) -> list[str]:
        """The type to ask for first, then the fallbacks, without repeats."""
        preferred = self.default_instance_type
        if estimated_size_bytes is not None:
            for below, instance_type in self.instance_type_by_size:
                if below is None or estimated_size_bytes < below:
                    preferred = instance_type
                    break
        return list(dict.fromkeys([preferred, *self.fallback_types]))


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())
