"""What the engine prints: parsed and redacted by the engine's parser, redacted once more
with the job's own secrets, then sent to the job's CloudWatch Logs stream (batched) and
to a local file. The latest progress and the last lines (for a failure summary) are kept.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Protocol

from aws_lambda_powertools import Logger

from jobs.attempts import DatabaseCheckpoint
from jobs.progress import Progress
from jobs.redact import redact
from worker.engines import OutputParser, ParsedLine, summarize_failure

logger = Logger(child=True)
RECENT_LINES = 200
WORKER_PREFIX = "[worker] "


class LineSink(Protocol):
    def write(self, line: str) -> None: ...

    def flush(self) -> None: ...


def open_local_log(directory: Path, job_id: str) -> IO[str] | None:
    """The instance-local copy of the job's log, readable by its owner only. A disk that
    cannot take it costs the local copy, not the job."""
    try:
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        fd = os.open(directory / f"{job_id}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(fd, "a", buffering=1, encoding="utf-8")
    except OSError as exc:
        logger.warning("no local log file", extra={"directory": str(directory), "reason": str(exc)})
        return None


class EngineOutput:
    def __init__(
        self,
        parser: OutputParser,
        remote: LineSink,
        local: IO[str] | None,
        secrets: list[str],
        *,
        flush_interval_seconds: float = 2.0,
    ) -> None:
        self._parser = parser
        self._flush_interval = flush_interval_seconds
        self._flushed_at = time.monotonic()
        self._remote = remote
        self._local = local
        self._secrets = secrets
        self._lock = threading.Lock()
        self._local_lock = threading.Lock()
        self._recent: deque[ParsedLine] = deque(maxlen=RECENT_LINES)
        self._progress = Progress()
        self._progress_changed = False
        self._checkpoint: dict[str, DatabaseCheckpoint] = {}
        self._checkpoint_changed = False
        self._checkpoint_events = 0  # printed by the engine so far
        self.lines = 0

    def handle_line(self, line: str) -> None:
        """Called by the engine's reader thread for every line it prints."""
        parsed = self._parser.parse_line(line)
        parsed = ParsedLine(
            log=redact(parsed.log, self._secrets),
            progress=self._redacted(parsed.progress) if parsed.progress else None,
            is_error=parsed.is_error,
            checkpoint=parsed.checkpoint,
        )
        self._emit(parsed.log)
        with self._lock:
            self.lines += 1
            self._recent.append(parsed)
            if parsed.progress is not None and parsed.progress != self._progress:
                self._progress = parsed.progress
                self._progress_changed = True
            if parsed.checkpoint is not None:
                database, entry = parsed.checkpoint
                self._checkpoint[database] = entry
                self._checkpoint_changed = True
                self._checkpoint_events += 1

    def note(self, message: str) -> None:
        """A line from the worker itself, in the same stream (start, cancel, outcome)."""
        self._emit(WORKER_PREFIX + redact(message, self._secrets))

    def set_progress(self, progress: Progress) -> None:
        with self._lock:
            self._progress = self._redacted(progress)
            self._progress_changed = True

    @property
    def progress_pending(self) -> bool:
        with self._lock:
            return self._progress_changed

    @property
    def progress(self) -> Progress:
        with self._lock:
            return self._progress

    def take_progress(self) -> Progress | None:
        """The progress to write, if it changed since the last take."""
        with self._lock:
            if not self._progress_changed:
                return None
            self._progress_changed = False
            return self._progress

    def seed_checkpoint(self, checkpoint: dict[str, DatabaseCheckpoint]) -> None:
        """What earlier attempts recorded: the engine's entries update it."""
        with self._lock:
            self._checkpoint = dict(checkpoint)

    @property
    def checkpoint(self) -> dict[str, DatabaseCheckpoint]:
        with self._lock:
            return dict(self._checkpoint)

    def take_checkpoint(self) -> tuple[dict[str, DatabaseCheckpoint], int] | None:
        """The whole checkpoint, if an entry changed since the last take, and how many of the
        engine's checkpoint events it holds."""
        with self._lock:
            if not self._checkpoint_changed:
                return None
            self._checkpoint_changed = False
            return dict(self._checkpoint), self._checkpoint_events

    def keep_checkpoint_pending(self) -> None:
        """The last take was not written: take it again next time."""
        with self._lock:
            self._checkpoint_changed = True

    def failure_summary(self) -> str:
        with self._lock:
            recent = list(self._recent)
        return summarize_failure(recent, self._secrets)

    def flush_if_due(self) -> None:
        """Lines of a quiet engine must not wait in the buffer for the next line."""
        if time.monotonic() - self._flushed_at >= self._flush_interval:
            self._flushed_at = time.monotonic()
            self._remote.flush()

    def close(self) -> None:
        self._remote.flush()
        if self._local is not None:
            with contextlib.suppress(OSError):
                self._local.close()

    def _emit(self, text: str) -> None:
        if self._local is not None:
            try:
                with self._local_lock:
                    self._local.write(text + "\n")
            except OSError as exc:
                logger.warning("local log write failed", extra={"reason": str(exc)})
        self._remote.write(text)

    def _redacted(self, progress: Progress) -> Progress:
        return progress.model_copy(update={"message": redact(progress.message, self._secrets)})
