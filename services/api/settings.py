"""The API's settings, read once per cold start from the environment.

Terraform sets exactly these variables (plus POWERTOOLS_*, which Powertools reads itself).
A plain pydantic model reads them as pydantic-settings would (the field's name, in any
case; arguments win), because importing pydantic-settings cost about 12 ms of every
cold start for four strings, two numbers and two flags.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobs.policy import ConnectionPolicy


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", validate_default=True)

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

    def __init__(self, **values: Any) -> None:
        environment = {name.lower(): value for name, value in os.environ.items()}
        found = {name: environment[name] for name in type(self).model_fields if name in environment}
        super().__init__(**{**found, **values})

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
