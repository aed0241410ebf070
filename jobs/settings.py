"""The one settings mechanism of the api, launcher, reaper and worker: a plain pydantic
model read from the environment once per cold start (`from_environment`).

It reads the variables as pydantic-settings would (the field's name or its aliases, in any
case; list, tuple and dict fields as JSON; explicit arguments win): importing
pydantic-settings cost about 12 ms before the API's first answer and before the worker's
first write.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, Self, get_origin

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from jobs.policy import ConnectionPolicy
from jobs.spec import MAX_JOB_TIMEOUT_SECONDS

# The operator's maximum run time of one job: the API refuses a longer `job_timeout_seconds`,
# the reaper times a job out past it, and the launcher hands it to the worker.
MaxJobRuntimeSeconds = Annotated[int, Field(ge=1, le=MAX_JOB_TIMEOUT_SECONDS)]


class EnvironmentSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", validate_default=True)

    @classmethod
    def from_environment(cls, **overrides: Any) -> Self:
        environment = {name.lower(): value for name, value in os.environ.items()}
        found: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            choices = alias.choices if isinstance(alias, AliasChoices) else [name]
            # All present names go in; AliasChoices' order decides, as in pydantic-settings.
            complex_value = get_origin(info.annotation) in (list, tuple, dict)
            found.update(
                (each, json.loads(value) if complex_value else value)
                for each in choices
                if isinstance(each, str) and (value := environment.get(each.lower())) is not None
            )
        return cls.model_validate({**found, **overrides})


class HostPolicySettings(EnvironmentSettings):
    """Where jobs may connect: checked by the API as written, by the worker as resolved."""

    # Comma-separated host suffixes a target must end in; empty means any public host.
    allowed_target_suffixes: str = ""
    allow_loopback_hosts: bool = False
    allow_private_hosts: bool = False

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
