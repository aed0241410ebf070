"""Request bodies the OpenAPI document shows: the shapes the replicator CLI sends
(reference: its serde output), with obviously fake credentials."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.models import Example

_SOURCE = "postgresql://replicator:example-password@source.example.com:5432/shop?sslmode=require"
_TARGET = "postgresql://replicator:example-password@db.example.com:5432/shop?channel_binding=require"
_OPTIONS = {
    "drop_existing": False,
    "enable_sync": True,
    "log_level": "info",
    "estimated_size_bytes": 123456789,
    "job_timeout_seconds": 28800,
}

# Plain mappings, validated into OpenAPI models only when the document is built: importing
# those models costs a cold start about 40 ms.
_SUBMIT_EXAMPLES: dict[str, dict[str, Any]] = {
    "cli_url_mode": dict(
        summary="The replicator CLI, a target URL and one filter flag",
        value={
            "schema_version": "1.0",
            "command": "init",
            "source_url": _SOURCE,
            "target_url": _TARGET,
            "filter": {
                "include_databases": ["shop"],
                "exclude_databases": None,
                "include_tables": None,
                "exclude_tables": None,
            },
            "options": _OPTIONS,
        },
    ),
    "cli_project_mode": dict(
        summary="The replicator CLI with a SerenDB project picked as the target",
        value={
            "schema_version": "1.0",
            "command": "init",
            "source_url": _SOURCE,
            "target_url": _TARGET,
            "target_project_id": "example-project",
            "target_branch_id": "example-branch",
            "target_databases": ["shop"],
            "seren_api_key": "example-console-key",
            "options": {**_OPTIONS, "log_level": "info,tokio_postgres=warn"},
        },
    ),
    "curl": dict(
        summary="The shortest request: no schema_version, empty filter and options",
        value={
            "command": "verify",
            "source_url": _SOURCE,
            "target_url": _TARGET,
            "filter": {},
            "options": {},
        },
    ),
}

SUBMIT_EXAMPLES = cast("dict[str, Example]", _SUBMIT_EXAMPLES)
