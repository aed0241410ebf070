"""The built-in `pg` engine: PostgreSQL's own tools and SQL, run as `python -m worker.engines.pg`.

The worker runs it like any engine binary; this module is the worker-side half
(invocation and output parsing), `__main__`/`commands` the engine process itself.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from pydantic import ValidationError

from jobs.attempts import DatabaseCheckpoint
from jobs.progress import Progress
from jobs.redact import redact
from worker.engines.base import EngineJob, Invocation, ParsedLine, job_secrets, looks_like_error
from worker.engines.pg.engine_input import engine_input
from worker.engines.pg.events import CHECKPOINT_EVENT, PROGRESS_EVENT

EXIT_MESSAGES = {1: "the pg engine failed", 2: "the pg engine was given unusable input"}


@dataclass
class PgParser:
    secrets: list[str] = field(repr=False)

    def parse_line(self, line: str) -> ParsedLine:
        text = redact(line.rstrip("\r\n"), self.secrets)
        if text.startswith("{"):
            try:
                event = json.loads(text)
                if isinstance(event, dict) and event.get("event") == PROGRESS_EVENT:
                    progress = Progress.model_validate(event)
                    return ParsedLine(log=f"PROGRESS: {progress.message}", progress=progress)
                if isinstance(event, dict) and event.get("event") == CHECKPOINT_EVENT:
                    database = str(event.get("database") or "")
                    entry = DatabaseCheckpoint.model_validate(event)
                    return ParsedLine(
                        log=f"CHECKPOINT: {database} {entry.state}", checkpoint=(database, entry)
                    )
            except (ValueError, ValidationError):
                pass
        is_error = text.startswith(("ERROR:", "FATAL:")) or (
            not text.startswith(("INFO:", "WARN:")) and looks_like_error(text)
        )
        return ParsedLine(log=text, is_error=is_error)


class PgEngine:
    name = "pg"

    def invocation(self, job: EngineJob) -> Invocation:
        return Invocation(
            argv=[sys.executable, "-m", "worker.engines.pg"],
            env={"PYTHONUNBUFFERED": "1"},
            secrets=job_secrets(job),
            stdin=json.dumps(engine_input(job)).encode(),
        )

    def parser(self, invocation: Invocation) -> PgParser:
        return PgParser(secrets=invocation.secrets)

    def exit_message(self, code: int) -> str:
        if code < 0:
            return f"the pg engine was stopped by signal {-code}"
        return EXIT_MESSAGES.get(code, f"the pg engine exited with code {code}")
