"""Entry point of the pg engine: `python -m worker.engines.pg`.

No secret is in argv or in the environment: one JSON object on stdin holds the job
(command, filter, options), the URLs and the checked address of each host
(`source_hostaddr`, `target_hostaddr`: every connection goes there, the name is kept for
TLS). Exit 0 on success, 1 on failure (the last stderr line says why), 2 when the inputs
are unusable.
"""

from __future__ import annotations

import signal
import sys

import psycopg
from pydantic import ValidationError

from jobs.redact import redact
from jobs.urls import InvalidUrl
from worker.engines.pg.commands import run
from worker.engines.pg.engine_input import acknowledgements, read_engine_input
from worker.engines.pg.events import Emitter
from worker.engines.pg.tools import EngineError, source_text

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_TERMINATED = 143


def _terminate(signum: int, frame: object) -> None:
    # Unwind instead of dying on the spot, so a failed init still drops its replication slots.
    raise SystemExit(EXIT_TERMINATED)


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    emit = Emitter(secrets=[], acks=acknowledgements())
    try:
        command, ctx, _ = read_engine_input(sys.stdin.read(), emit)
    except (InvalidUrl, ValueError, ValidationError, AttributeError) as exc:
        emit.error(f"invalid engine input: {exc}")
        return EXIT_BAD_INPUT
    emit.level = ctx.options.engine_log_level
    emit.info(f"pg engine: {command.value} from {ctx.source.redacted} to {ctx.target.redacted}")
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
