"""Entry point of the pg engine: `python -m worker.engines.pg`.

No secret is in argv: the command, filter and options come from REPLICATION_JOB (JSON),
the URLs from SOURCE_URL and TARGET_URL. Exit 0 on success, 1 on failure (the last
stderr line says why), 2 when the inputs are unusable.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import psycopg
from pydantic import ValidationError

from jobs.redact import redact
from jobs.spec import Command, JobFilter, JobOptions
from jobs.urls import InvalidUrl, parse_url
from worker.engines.pg.commands import Context, run
from worker.engines.pg.events import Emitter
from worker.engines.pg.tools import EngineError

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_TERMINATED = 143


def _terminate(signum: int, frame: object) -> None:
    # Unwind instead of dying on the spot, so a failed init still drops its replication slots.
    raise SystemExit(EXIT_TERMINATED)


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    # Read and forget the private inputs so no child process inherits them.
    raw_source = os.environ.pop("SOURCE_URL", "")
    raw_target = os.environ.pop("TARGET_URL", "")
    raw_job = os.environ.pop("REPLICATION_JOB", "")
    emit = Emitter(secrets=[s for s in (raw_source, raw_target) if s])
    try:
        source = parse_url(raw_source, field="SOURCE_URL")
        target = parse_url(raw_target, field="TARGET_URL")
        spec = json.loads(raw_job or "{}")
        command = Command(str(spec.get("command", "")).lower())
        ctx = Context(
            source=source,
            target=target,
            job_filter=JobFilter.model_validate(spec.get("filter") or {}),
            options=JobOptions.model_validate(spec.get("options") or {}),
            emit=emit,
        )
    except (InvalidUrl, ValueError, ValidationError) as exc:
        emit.error(f"invalid engine input: {exc}")
        return EXIT_BAD_INPUT
    emit.secrets += [p for p in (source.password, target.password) if p]
    emit.info(f"pg engine: {command.value} from {source.redacted} to {target.redacted}")
    try:
        run(command, ctx)
    except EngineError as exc:
        emit.error(str(exc))
        return EXIT_FAILED
    except psycopg.Error as exc:
        emit.error(f"{command.value} failed: {redact(str(exc).strip(), emit.secrets)}")
        return EXIT_FAILED
    except Exception as exc:
        emit.error(f"{command.value} failed unexpectedly: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
