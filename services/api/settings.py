"""The API's settings, read once per cold start from the environment.

Terraform sets exactly these variables (plus POWERTOOLS_*, which Powertools reads itself).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.policy import ConnectionPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    jobs_table_name: str = Field(min_length=3)
    api_keys_table_name: str = Field(min_length=3)
    kms_key_id: str = Field(min_length=1)
    job_retention_days: int = Field(default=30, ge=1, le=3650)
    max_unfinished_jobs_per_owner: int = Field(default=20, ge=1, le=10_000)
    # Comma-separated host suffixes a target must end in; empty means any public host.
    allowed_target_suffixes: str = ""
    allow_loopback_hosts: bool = False
    allow_private_hosts: bool = False
    worker_log_group: str = Field(min_length=1)

    @property
    def target_suffixes(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.allowed_target_suffixes.split(",") if s.strip())

    @property
    def connection_policy(self) -> ConnectionPolicy:
        return ConnectionPolicy(
            allowed_target_suffixes=self.target_suffixes,
            allow_loopback=self.allow_loopback_hosts,
            allow_private=self.allow_private_hosts,
        )


def environment_variables() -> frozenset[str]:
    """The variable names this model reads (what Terraform must set)."""
    return frozenset(name.upper() for name in Settings.model_fields)
