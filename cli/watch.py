"""Following a job until it ends: a live line on a terminal, one line per change otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from cli.client import ApiClient, ApiError, TransientError

TERMINAL = ("completed", "failed", "timeout", "cancelled")
EXIT_CODES = {"completed": 0, "failed": 1, "timeout": 3, "cancelled": 4}
LOG_LINES_ON_FAILURE = 20
LOG_ATTEMPTS = 5


def exit_code_for(status: str) -> int:
    return EXIT_CODES.get(status, 1)


def _elapsed(job: dict[str, Any], now: datetime) -> str:
    start = job.get("created_at")
    if not start:
        return "-"
    began = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    end_text = job.get("completed_at")
    end = datetime.fromisoformat(str(end_text).replace("Z", "+00:00")) if end_text else now
    seconds = max(0, int((end - began).total_seconds()))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def retry_note(job: dict[str, Any]) -> str | None:
    """After a lost attempt: "instance lost, retrying (attempt 2 of 3)" until the next one runs."""
    lost = job.get("lost_attempts") or []
    if not lost or job.get("status") in (*TERMINAL, "running", "cancelling"):
        return None
    attempt = max(int(job.get("attempt") or 0), int(lost[-1].get("attempt") or 0) + 1)
    of = f" of {job['max_attempts']}" if job.get("max_attempts") else ""
    return f"instance lost, retrying (attempt {attempt}{of})"


def describe(job: dict[str, Any], now: datetime | None = None) -> str:
    """One line: status, phase, databases x of y, percent, elapsed, message."""
    progress = job.get("progress") or {}
    parts = [str(job.get("status", "?"))]
    note = retry_note(job)
    if note:
        parts.append(note)
    if progress.get("phase"):
        parts.append(str(progress["phase"]))
    total = progress.get("databases_total") or 0
    if total:
        parts.append(f"databases {progress.get('databases_completed', 0)}/{total}")
    if progress.get("percent") is not None:
        parts.append(f"{float(progress['percent']):.0f}%")
    parts.append(_elapsed(job, now or datetime.now(UTC)))
    line = " | ".join(parts)
    if progress.get("message"):
        line += f" | {progress['message']}"
    return line


@dataclass
class Watcher:
    client: ApiClient
    out: TextIO
    live: bool  # a terminal: redraw one line in place
    interval_seconds: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    statuses_seen: list[str] = field(default_factory=list)
    _last_line: str = ""

    def watch(self, job_id: str) -> dict[str, Any]:
        """Poll until the job ends; network trouble is reported and waited out."""
        while True:
            try:
                job = self.client.job(job_id)
            except TransientError as exc:
                self._show(f"(retrying: {exc})")
                self.sleep(self.interval_seconds)
                continue
            status = str(job.get("status"))
            if not self.statuses_seen or self.statuses_seen[-1] != status:
                self.statuses_seen.append(status)
            self._show(describe(job))
            if status in TERMINAL:
                if self.live:
                    self.out.write("\n")
                self.out.flush()
                return job
            self.sleep(self.interval_seconds)

    def _show(self, line: str) -> None:
        if self.live:
            self.out.write("\r\x1b[2K" + line[:200])
            self.out.flush()
        elif line != self._last_line:
            self.out.write(line + "\n")
            self.out.flush()
        self._last_line = line


def report_outcome(
    client: ApiClient, job: dict[str, Any], out: TextIO, sleep: Callable[[float], None] = time.sleep
) -> int:
    """Print how the job ended (with the error and the last log lines on failure)."""
    status = str(job.get("status"))
    if status == "completed":
        out.write(f"job {job.get('job_id')} completed\n")
        return 0
    out.write(f"job {job.get('job_id')} {status}: {job.get('error') or 'no error message'}\n")
    lines = job.get("logs") or []
    # The worker's last lines can reach the log a moment after its outcome: ask again briefly.
    for _ in range(LOG_ATTEMPTS):
        if lines:
            break
        sleep(1.0)
        try:
            lines = client.logs(str(job["job_id"]), limit=LOG_LINES_ON_FAILURE)
        except (ApiError, TransientError):  # the logs are a courtesy; the outcome is known
            break
    if lines:
        out.write(f"last {min(len(lines), LOG_LINES_ON_FAILURE)} log lines:\n")
        for line in lines[-LOG_LINES_ON_FAILURE:]:
            out.write(f"  {line}\n")
    return exit_code_for(status)
