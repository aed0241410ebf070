"""Entry point of the pg engine: `python -m worker.engines.pg`.

No secret is in argv or in the environment: one JSON object on stdin holds the job
(command, filter, options), the URLs and the checked address of each host
(`source_hostaddr`, `target_hostaddr`: every connection goes there, the name is kept for
TLS). Exit 0 on success, 1 on failure (the last stderr line says why), 2 when the inputs
are unusable.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sys
from typing import TextIO

import psycopg
from pydantic import ValidationError

from jobs.attempts import DatabaseCheckpoint
from jobs.redact import redact
from jobs.spec import Command, JobFilter, JobOptions
from jobs.urls import ConnectionUrl, InvalidUrl, parse_url
from worker.engines.base import CHECKPOINT_ACK_FD
from worker.engines.pg.commands import Context, run
from worker.engines.pg.events import Emitter
from worker.engines.pg.tools import EngineError, source_text

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_TERMINATED = 143


def _terminate(signum: int, frame: object) -> None:
    # Unwind instead of dying on the spot, so a failed init still drops its replication slots.
    raise SystemExit(EXIT_TERMINATED)


def _at_checked_address(url: ConnectionUrl, hostaddr: object) -> ConnectionUrl:
    if hostaddr is None:
        return url
    return url.at_address(str(ipaddress.ip_address(str(hostaddr))))


def _acknowledgements() -> TextIO | None:
    """The worker's acknowledgements of checkpoints, when a worker runs this engine."""
    descriptor = os.environ.get(CHECKPOINT_ACK_FD)
    return os.fdopen(int(descriptor), "r") if descriptor else None


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    emit = Emitter(secrets=[], acks=_acknowledgements())
    try:
        engine_input = json.loads(sys.stdin.read() or "{}")
        raw_source, raw_target = (
            str(engine_input.get("source_url", "")),
            str(engine_input.get("target_url", "")),
        )
        emit.secrets += [s for s in (raw_source, raw_target) if s]
        source = _at_checked_address(
            parse_url(raw_source, field="source_url"), engine_input.get("source_hostaddr")
        )
        target = _at_checked_address(
            parse_url(raw_target, field="target_url"), engine_input.get("target_hostaddr")
        )
        spec = engine_input.get("job") or {}
        command = Command(str(spec.get("command", "")).lower())
        ctx = Context(
            source=source,
            target=target,
            job_filter=JobFilter.model_validate(spec.get("filter") or {}),
            options=JobOptions.model_validate(spec.get("options") or {}),
            emit=emit,
            checkpoint={
                str(name): DatabaseCheckpoint.model_validate(entry)
                for name, entry in (engine_input.get("checkpoint") or {}).items()
            },
        )
    except (InvalidUrl, ValueError, ValidationError, AttributeError) as exc:
        emit.error(f"invalid engine input: {exc}")
        return EXIT_BAD_INPUT
    emit.secrets += [p for p in (source.password, target.password) if p]
    emit.level = ctx.options.engine_log_level
    emit.info(f"pg engine: {command.value} from {source.redacted} to {target.redacted}")
    try:
        run(command, ctx)
    except EngineError as exc:
        # One line: a message holding the source's text must not print lines of its own.
        emit.error(" ".join(str(exc).split()))
        return EXIT_FAILED
    except psycopg.Error as exc:
        emit.error(f"{command.value} failed: {redact(source_text(str(exc)), emit.secrets)}")
        return EXIT_FAILED
    except Exception as exc:
        emit.error(f"{command.value} failed unexpectedly: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
