"""What a client asks for: the job spec, as pydantic models. No AWS imports.

Schema "1.0" is what the deployed replicator CLI sends (a missing version means "1.0");
newer CLIs send the extra filter fields and options while still saying "1.0", so both
versions accept them. Schema "1.1" differs in what the client is shown: the full status
vocabulary instead of the four words a 1.0 client knows.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from jobs.urls import parse_url

MAX_FILTER_ITEMS = 100
DEFAULT_JOB_TIMEOUT_SECONDS = 8 * 3600
MAX_JOB_TIMEOUT_SECONDS = 7 * 24 * 3600
MIN_JOB_TIMEOUT_SECONDS = 60

_IDENT = r"[A-Za-z_][A-Za-z0-9_\-]{0,62}"
DATABASE_PATTERN = re.compile(rf"^{_IDENT}$")
# database.table or database.schema.table
TABLE_PATTERN = re.compile(rf"^{_IDENT}\.{_IDENT}(\.{_IDENT})?$")


class Command(StrEnum):
    INIT = "init"
    VALIDATE = "validate"
    SYNC = "sync"
    STATUS = "status"
    VERIFY = "verify"


class LogLevel(StrEnum):
    ERROR = "error"
    WARN = "warn"
    INFO = "info"
    DEBUG = "debug"
    TRACE = "trace"


DatabaseName = Annotated[StrictStr, Field(pattern=DATABASE_PATTERN.pattern)]
TableName = Annotated[StrictStr, Field(pattern=TABLE_PATTERN.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobFilter(_Strict):
    include_databases: list[DatabaseName] = Field(default_factory=list, max_length=MAX_FILTER_ITEMS)
    exclude_databases: list[DatabaseName] = Field(default_factory=list, max_length=MAX_FILTER_ITEMS)
    include_tables: list[TableName] = Field(default_factory=list, max_length=MAX_FILTER_ITEMS)
    exclude_tables: list[TableName] = Field(default_factory=list, max_length=MAX_FILTER_ITEMS)


class JobOptions(_Strict):
    drop_existing: StrictBool = False
    enable_sync: StrictBool = True
    estimated_size_bytes: StrictInt | None = Field(default=None, ge=0, le=1 << 50)
    job_timeout_seconds: StrictInt = Field(
        default=DEFAULT_JOB_TIMEOUT_SECONDS, ge=MIN_JOB_TIMEOUT_SECONDS, le=MAX_JOB_TIMEOUT_SECONDS
    )
    log_level: LogLevel = LogLevel.INFO

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class JobSpec(_Strict):
    """A submitted job, validated. URLs are still plaintext here: never log this object."""

    schema_version: Literal["1.0", "1.1"] = "1.0"
    command: Command
    source_url: StrictStr = Field(repr=False)
    target_url: StrictStr = Field(repr=False)
    filter: JobFilter = Field(default_factory=JobFilter)
    options: JobOptions = Field(default_factory=JobOptions)

    @field_validator("command", mode="before")
    @classmethod
    def _lowercase_command(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("filter", "options", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("source_url", "target_url")
    @classmethod
    def _valid_url(cls, value: str, info: Any) -> str:
        parse_url(value, field=info.field_name)
        return value

    def fingerprint_fields(self) -> dict[str, Any]:
        """Everything that makes two submissions the same request (for idempotency keys)."""
        return self.model_dump(mode="json")
