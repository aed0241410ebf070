"""The API's settings, read once per cold start from the environment.

Terraform sets exactly these variables (plus POWERTOOLS_*, which Powertools reads itself).
`jobs.settings` explains why this is not pydantic-settings.
"""

from __future__ import annotations

from pydantic import Field

from jobs.rate_limit import RateLimit
from jobs.settings import HostPolicySettings, MaxJobRuntimeSeconds
from jobs.spec import I64_MAX, MAX_JOB_TIMEOUT_SECONDS


class Settings(HostPolicySettings):
    jobs_table_name: str = Field(min_length=3)
    api_keys_table_name: str = Field(min_length=3)
    kms_key_id: str = Field(min_length=1)
    # The HMAC key of request fingerprints (jobs.crypto.RequestMac).
    request_mac_key_id: str = Field(min_length=1)
    job_retention_days: int = Field(default=30, ge=1, le=3650)
    max_unfinished_jobs_per_owner: int = Field(default=20, ge=1, le=10_000)
    worker_log_group: str = Field(min_length=1)
    max_job_runtime_seconds: MaxJobRuntimeSeconds = MAX_JOB_TIMEOUT_SECONDS
    # The largest `estimated_size_bytes` a client may give: the size decides the worker's
    # instance type (the launcher's INSTANCE_TYPE_BY_SIZE), so this caps the size class.
    max_estimated_size_bytes: int = Field(default=16 * 1024**4, ge=0, le=I64_MAX)
    # Each API key's request bucket (jobs.rate_limit): requests a second, and how many may
    # come at once after a quiet spell. Past it, 429 with Retry-After.
    api_key_rate_per_second: float = Field(default=5, gt=0, le=10_000)
    api_key_burst: int = Field(default=20, ge=1, le=100_000)

    @property
    def api_key_rate_limit(self) -> RateLimit:
        return RateLimit(per_second=self.api_key_rate_per_second, burst=self.api_key_burst)


def environment_variables() -> frozenset[str]:
    """The variable names this model reads (what Terraform must set)."""
    return frozenset(name.upper() for name in Settings.model_fields)
