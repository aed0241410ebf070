"""The JSON object the worker writes on an engine's stdin (no secret is in argv or in the
environment), read back into the command and its `Context`: shared by the pg engine and the
seren-replicator preflight (`worker.engines.replicator_preflight`)."""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any, TextIO

from jobs.attempts import DatabaseCheckpoint
from jobs.spec import Command, JobFilter, JobOptions
from jobs.urls import ConnectionUrl, parse_url
from worker.engines.base import CHECKPOINT_ACK_FD, EngineJob
from worker.engines.pg.context import Context
from worker.engines.pg.events import Emitter


def engine_input(job: EngineJob) -> dict[str, Any]:
    """What the worker writes on the engine's stdin for `job`."""
    return {
        "job": {
            "command": job.command.value,
            "filter": job.filter.model_dump(mode="json"),
            "options": job.options.model_dump(mode="json"),
        },
        "source_url": job.source_url,
        "target_url": job.target_url,
        "source_hostaddr": job.source_hostaddr,
        "target_hostaddr": job.target_hostaddr,
        "checkpoint": {name: entry.model_dump(mode="json") for name, entry in job.checkpoint.items()},
    }


def acknowledgements() -> TextIO | None:
    """The worker's acknowledgements of checkpoints, when a worker runs the engine."""
    descriptor = os.environ.get(CHECKPOINT_ACK_FD)
    return os.fdopen(int(descriptor), "r") if descriptor else None


def _at_checked_address(url: ConnectionUrl, hostaddr: object) -> ConnectionUrl:
    if hostaddr is None:
        return url
    return url.at_address(str(ipaddress.ip_address(str(hostaddr))))


def read_engine_input(text: str, emit: Emitter) -> tuple[Command, Context, dict[str, Any]]:
    """The command, its context and the whole input object. The URLs (and, once parsed, their
    passwords) join `emit.secrets` before anything can fail on them. Raises InvalidUrl,
    ValueError, ValidationError or AttributeError on unusable input."""
    raw = json.loads(text or "{}")
    raw_source, raw_target = str(raw.get("source_url", "")), str(raw.get("target_url", ""))
    emit.secrets += [s for s in (raw_source, raw_target) if s]
    source = _at_checked_address(parse_url(raw_source, field="source_url"), raw.get("source_hostaddr"))
    target = _at_checked_address(parse_url(raw_target, field="target_url"), raw.get("target_hostaddr"))
    emit.secrets += [p for p in (source.password, target.password) if p]
    spec = raw.get("job") or {}
    command = Command(str(spec.get("command", "")).lower())
    ctx = Context(
        source=source,
        target=target,
        job_filter=JobFilter.model_validate(spec.get("filter") or {}),
        options=JobOptions.model_validate(spec.get("options") or {}),
        emit=emit,
        checkpoint={
            str(name): DatabaseCheckpoint.model_validate(entry)
            for name, entry in (raw.get("checkpoint") or {}).items()
        },
    )
    return command, ctx, raw
