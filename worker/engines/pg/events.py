"""What the pg engine prints: JSON progress events on stdout, plain log lines on stderr.

Every line goes through `redact` with the run's secrets before it is written: the
worker redacts again, but the engine must not rely on it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO, TypedDict, Unpack

from jobs.redact import redact

PROGRESS_EVENT = "progress"
# A target database's checkpoint entry (jobs.attempts.DatabaseCheckpoint), for the worker to record.
CHECKPOINT_EVENT = "checkpoint"
# Progress during a long copy is printed at most this often (seconds).
PROGRESS_INTERVAL = 1.0
# The lowest log level printed for each overall level of the job's `log_level` filter
# (errors are always printed: the job's error is made of them).
_LOWEST_PRINTED = {"off": "error", "error": "error", "warn": "warn"}
_RANK = {"info": 0, "warn": 1, "error": 2}


@dataclass(frozen=True)
class EngineProgress:
    """The progress event's fields (`jobs.progress.Progress` is what the worker reads back)."""

    phase: str = "starting"
    message: str = ""
    current_database: str | None = None
    databases_completed: int = 0
    databases_total: int = 0
    tables_completed: int = 0
    tables_total: int = 0
    bytes_copied: int = 0
    percent: float | None = None


class ProgressUpdate(TypedDict, total=False):
    phase: str
    message: str
    current_database: str | None
    databases_completed: int
    databases_total: int
    tables_completed: int
    tables_total: int
    percent: float | None


@dataclass
class Emitter:
    secrets: list[str] = field(repr=False, default_factory=list)
    level: str = "info"  # the job's overall level: jobs.spec.LOG_LEVELS
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    state: EngineProgress = field(default_factory=EngineProgress)
    # The worker's acknowledgements of checkpoint events (worker.engines.base.CHECKPOINT_ACK_FD);
    # None when the engine runs without a worker.
    acks: TextIO | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _last: float = 0.0
    _checkpoints: int = 0  # checkpoint events printed

    def _clean(self, text: str) -> str:
        return redact(" ".join(text.split()), self.secrets)

    def log(self, level: str, message: str) -> None:
        if _RANK.get(level, 0) < _RANK[_LOWEST_PRINTED.get(self.level, "info")]:
            return
        lines = [self._clean(line) for line in message.splitlines() if line.strip()] or [""]
        with self._lock:
            for line in lines:
                self.err.write(f"{level.upper()}: {line}\n")
            self.err.flush()

    def info(self, message: str) -> None:
        self.log("info", message)

    def warn(self, message: str) -> None:
        self.log("warn", message)

    def error(self, message: str) -> None:
        self.log("error", message)

    def progress(self, *, force: bool = True, **fields: Unpack[ProgressUpdate]) -> None:
        """Update the progress state; print it unless throttled (`force=False` during copies)."""
        with self._lock:
            self.state = dataclasses.replace(self.state, **fields)
            now = time.monotonic()
            if not force and now - self._last < PROGRESS_INTERVAL:
                return
            self._last = now
            event = {"event": PROGRESS_EVENT, **dataclasses.asdict(self.state)}
            event["message"] = self._clean(self.state.message)[:500]
            self.out.write(json.dumps(event, ensure_ascii=False) + "\n")
            self.out.flush()

    def checkpoint(self, database: str, entry: dict[str, object]) -> None:
        with self._lock:
            event = {"event": CHECKPOINT_EVENT, "database": database, **entry}
            self.out.write(json.dumps(event, ensure_ascii=False) + "\n")
            self.out.flush()
            self._checkpoints += 1

    def wait_recorded(self) -> bool:
        """Wait until the worker has recorded every checkpoint event printed so far; False if
        it stopped answering first."""
        if self.acks is None:
            return True
        while line := self.acks.readline():
            if int(line) >= self._checkpoints:
                return True
        return False

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self.state = dataclasses.replace(self.state, bytes_copied=self.state.bytes_copied + count)
