"""What a client asks for: the job spec, as pydantic models. No AWS imports.

Schema "1.0" is what the deployed replicator CLI sends (a missing version means "1.0");
newer CLIs send the extra filter fields and options while still saying "1.0", so both
versions accept them. Schema "1.1" differs in what the client is shown: the full status
vocabulary instead of the four words a 1.0 client knows.

The CLI's serde output is accepted as it is: a filter list written as `null` is not set,
`log_level` is a `tracing` filter, `job_timeout_seconds` any u64 (the service caps the
run time it grants), and a SerenDB project target comes with its console API key.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from jobs.urls import parse_url

MAX_FILTER_ITEMS = 100
DEFAULT_JOB_TIMEOUT_SECONDS = 8 * 3600
# The longest run the service ever grants a job; operators may set less
# (`MAX_JOB_RUNTIME_SECONDS`), and a job asking for more than theirs is refused.
MAX_JOB_TIMEOUT_SECONDS = 7 * 24 * 3600
U64_MAX = (1 << 64) - 1
I64_MAX = (1 << 63) - 1
I64_MIN = -(1 << 63)
MAX_LOG_FILTER_LENGTH = 512
MAX_SEREN_API_KEY_LENGTH = 512

_IDENT = r"[A-Za-z_][A-Za-z0-9_\-]{0,62}"
# A name with spaces, dots, quotes or unicode is written in double quotes, a quote doubled
# (as in SQL): "My DB"."sales dept"."order ""items""". No control characters; no commas,
# which separate the items of a filter on command lines.
_QUOTED = r'"(?:[^"\x00-\x1f\x7f,]|""){1,63}"'
_NAME = rf"(?:{_IDENT}|{_QUOTED})"
DATABASE_PATTERN = re.compile(rf"^{_IDENT}$")
FILTER_DATABASE_PATTERN = re.compile(rf"^{_NAME}$")
# database.table or database.schema.table
TABLE_PATTERN = re.compile(rf"^{_NAME}\.{_NAME}(?:\.{_NAME})?$")
_NAME_PART = re.compile(rf'({_IDENT})|"((?:[^"]|"")*)"')
# SerenDB console ids become path segments of console API calls.
CONSOLE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")
SEREN_API_KEY_PATTERN = re.compile(r"^[\x21-\x7e]+$")

# A `tracing` EnvFilter: comma-separated directives, each `level`, `target` or
# `target=level` (span and field filters are not accepted).
LOG_LEVELS = ("off", "error", "warn", "info", "debug", "trace")
_LOG_TARGET = r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*"
_LOG_LEVEL = "(?i:" + "|".join(LOG_LEVELS) + ")"
_LOG_DIRECTIVE = rf"(?:{_LOG_LEVEL}|{_LOG_TARGET}(?:={_LOG_LEVEL})?)"
LOG_FILTER_PATTERN = re.compile(rf"^\s*(?:{_LOG_DIRECTIVE})?(?:\s*,\s*(?:{_LOG_DIRECTIVE})?)*\s*$")
# The replicator's own crate: its level stands for the whole run when no bare level is given.
REPLICATOR_TARGET = "database_replicator"


def name_parts(entry: str) -> list[str]:
    """The names in a filter entry (`db`, `db.table`, `db.schema.table`), quoted ones unquoted."""
    parts: list[str] = []
    position = 0
    while True:
        match = _NAME_PART.match(entry, position)
        if match is None:
            raise ValueError(f"not a name: {entry!r}")
        parts.append(match[1] if match[1] is not None else match[2].replace('""', '"'))
        position = match.end()
        if position == len(entry):
            return parts
        if entry[position] != ".":
            raise ValueError(f"not a name: {entry!r}")
        position += 1


class Command(StrEnum):
    INIT = "init"
    VALIDATE = "validate"
    SYNC = "sync"
    STATUS = "status"
    VERIFY = "verify"


def engine_log_level(log_filter: str) -> str:
    """One overall level (one of LOG_LEVELS) for engines without targets: the last bare
    level of the filter, else the replicator crate's level, else "info"."""
    bare: str | None = None
    replicator: str | None = None
    for directive in (d.strip() for d in log_filter.split(",")):
        if not directive:
            continue
        target, equals, level = directive.rpartition("=")
        if not equals:
            target, level = ("", directive) if directive.lower() in LOG_LEVELS else (directive, "trace")
        if not target:
            bare = level.lower()
        elif target == REPLICATOR_TARGET or target.startswith(REPLICATOR_TARGET + "::"):
            replicator = level.lower()
    return bare or replicator or "info"


def _none_is_empty(value: Any) -> Any:
    return [] if value is None else value


def _nullable_in_schema(schema: dict[str, Any]) -> None:
    """Document what the validators accept: the value, or null for "not set"."""
    described = {k: v for k, v in schema.items() if k not in ("default", "title", "description")}
    for key in described:
        del schema[key]
    schema["anyOf"] = [described, {"type": "null"}]


DatabaseName = Annotated[StrictStr, Field(pattern=DATABASE_PATTERN.pattern)]
FilterDatabaseName = Annotated[StrictStr, Field(pattern=FILTER_DATABASE_PATTERN.pattern)]
TableName = Annotated[StrictStr, Field(pattern=TABLE_PATTERN.pattern)]
DatabaseList = Annotated[
    list[FilterDatabaseName],
    BeforeValidator(_none_is_empty),
    Field(max_length=MAX_FILTER_ITEMS, json_schema_extra=_nullable_in_schema),
]
TableList = Annotated[
    list[TableName],
    BeforeValidator(_none_is_empty),
    Field(max_length=MAX_FILTER_ITEMS, json_schema_extra=_nullable_in_schema),
]
ConsoleId = Annotated[StrictStr, Field(pattern=CONSOLE_ID_PATTERN.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobFilter(_Strict):
    """Which databases and tables; a list written as null is not set (the CLI writes all
    four keys once any is set)."""

    include_databases: DatabaseList = Field(default_factory=list)
    exclude_databases: DatabaseList = Field(default_factory=list)
    include_tables: TableList = Field(default_factory=list)
    exclude_tables: TableList = Field(default_factory=list)


class JobOptions(_Strict):
    drop_existing: StrictBool = False
    enable_sync: StrictBool = True
    copy_roles: StrictBool = Field(
        default=False,
        description=(
            "pg engine: create on the target the roles that the copied databases' grants and "
            "policies name (never their passwords, nor SUPERUSER, REPLICATION or BYPASSRLS) and "
            "copy the grants"
        ),
    )
    trust_source_code: StrictBool = Field(
        default=False,
        description=(
            "pg engine: the source database and everyone who can write to it are trusted. Without "
            "it, validate and init refuse a database whose copy or replication would run code from "
            "the source on the target (CHECK constraints, index expressions, generated columns, "
            "partition keys, statistics, refreshed materialized views, ENABLE ALWAYS/REPLICA "
            "triggers calling functions that are not built in, settings that change later "
            "sessions' role or search_path): that code runs with the target user's rights"
        ),
    )
    estimated_size_bytes: StrictInt | None = Field(default=None, ge=0, le=I64_MAX)
    # The CLI takes a u64 and writes it as an i64: limits above I64_MAX arrive negative.
    job_timeout_seconds: StrictInt = Field(
        default=DEFAULT_JOB_TIMEOUT_SECONDS,
        ge=I64_MIN,
        le=U64_MAX,
        description=(
            f"The job's time limit in seconds, at most the operator's maximum ({MAX_JOB_TIMEOUT_SECONDS} "
            "unless set lower); more is refused (400, naming the maximum). 0, and the negative values "
            "the replicator CLI sends for limits above 2^63-1, ask for that maximum."
        ),
    )
    log_level: StrictStr = Field(
        default="info",
        max_length=MAX_LOG_FILTER_LENGTH,
        pattern=LOG_FILTER_PATTERN.pattern,
        description="A tracing filter: comma-separated `level`, `target` or `target=level` directives",
        examples=["info", "off", "database_replicator=debug", "info,tokio_postgres=warn"],
    )
    # init: a retried attempt starts over instead of keeping the databases finished before
    # (the upstream CLI's --no-resume).
    no_resume: StrictBool = False

    @property
    def timeout_seconds(self) -> int:
        """The run time this job is granted: its own limit, capped by the service's."""
        return self.runtime_limit(MAX_JOB_TIMEOUT_SECONDS)

    def runtime_limit(self, maximum: int) -> int:
        """The run time this job is granted under the operator's `maximum`: its own limit,
        or the maximum when it asks for the longest."""
        if self.job_timeout_seconds <= 0:
            return maximum
        return min(self.job_timeout_seconds, maximum)

    def asks_beyond(self, maximum: int) -> bool:
        """Whether the job asks for more run time than `maximum` grants."""
        return self.job_timeout_seconds > maximum

    @property
    def engine_log_level(self) -> str:
        return engine_log_level(self.log_level)


class JobSpec(_Strict):
    """A submitted job, validated. URLs and the console key are still plaintext here:
    never log this object."""

    schema_version: Literal["1.0", "1.1"] = "1.0"
    command: Command
    source_url: StrictStr = Field(repr=False)
    target_url: StrictStr = Field(repr=False)
    # A SerenDB project target (the CLI's project picker): the worker creates the missing
    # databases and enables logical replication through the console API with this key.
    target_project_id: ConsoleId | None = None
    target_branch_id: ConsoleId | None = None
    target_databases: Annotated[list[DatabaseName], Field(max_length=MAX_FILTER_ITEMS)] | None = None
    seren_api_key: (
        Annotated[
            StrictStr,
            Field(
                min_length=1,
                max_length=MAX_SEREN_API_KEY_LENGTH,
                pattern=SEREN_API_KEY_PATTERN.pattern,
                description="The SerenDB console API key (a secret, like the URLs)",
            ),
        ]
        | None
    ) = Field(default=None, repr=False)
    # null, as left out: no filter, the default options.
    filter: JobFilter = Field(default_factory=JobFilter, json_schema_extra=_nullable_in_schema)
    options: JobOptions = Field(default_factory=JobOptions, json_schema_extra=_nullable_in_schema)

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

    @model_validator(mode="after")
    def _project_is_whole(self) -> JobSpec:
        project = (self.target_project_id, self.target_branch_id, self.seren_api_key)
        if any(part is not None for part in project) and None in project:
            raise ValueError(
                "target_project_id, target_branch_id and seren_api_key come together "
                "(a SerenDB project target)"
            )
        if self.target_databases is not None and self.target_project_id is None:
            raise ValueError("target_databases needs target_project_id (a SerenDB project target)")
        return self

    def fingerprint_fields(self) -> dict[str, Any]:
        """Everything that makes two submissions the same request (for idempotency keys)."""
        return self.model_dump(mode="json")


class ProjectTarget(BaseModel):
    """A SerenDB project target as kept on the job (no key: that is a credential)."""

    model_config = ConfigDict(frozen=True)

    project_id: str
    branch_id: str
    databases: list[str] = Field(default_factory=list)
