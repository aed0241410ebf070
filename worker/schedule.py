"""When the worker writes to its job's item: a heartbeat at least every interval, progress
at most every few seconds, and all of it within a budget of writes per hour.

Every write carries the heartbeat and the latest progress, so a progress write also counts
as the heartbeat, and a heartbeat that is due takes the pending progress along. Progress
may go out early only while the budget (a token bucket with a small burst) has room;
heartbeats always go out. Pure logic over a monotonic clock: the bench replays it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

# Writes that may go out in quick succession (phase changes early in a job).
BURST = 6


class Write(Enum):
    HEARTBEAT = "heartbeat"
    PROGRESS = "progress"


@dataclass
class WriteSchedule:
    heartbeat_interval: float
    progress_min_interval: float
    writes_per_hour: int
    start: float
    last_write: float = field(init=False)
    tokens: float = field(init=False)
    _refilled_at: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_write = self.start
        self.tokens = float(min(BURST, self.writes_per_hour))
        self._refilled_at = self.start

    @property
    def _rate(self) -> float:
        """Tokens per second, leaving the burst out of the hourly budget."""
        return max(self.writes_per_hour - BURST, 1) / 3600.0

    def _refill(self, now: float) -> None:
        self.tokens = min(float(BURST), self.tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now

    def due(self, now: float, progress_pending: bool) -> Write | None:
        self._refill(now)
        since = now - self.last_write
        if since >= self.heartbeat_interval:
            return Write.HEARTBEAT
        if progress_pending and since >= self.progress_min_interval and self.tokens >= 1:
            return Write.PROGRESS
        return None

    def wrote(self, now: float) -> None:
        """Record a write attempt (a failed one spent the budget too: DynamoDB was busy)."""
        self._refill(now)
        self.tokens -= 1
        self.last_write = now
