"""Each API key's request budget: a token bucket of `burst` requests refilled at `per_second`,
kept as one number in the key's item. No AWS imports.

The number is the bucket's "theoretical arrival time" (the generic cell rate algorithm, the
token bucket's equivalent): each request served pushes it one interval later, and a request
is served while it is at most `burst - 1` intervals ahead of now. Spending is then a plain
atomic addition under a condition, so concurrent requests of one key never refuse each other
while the bucket holds tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

MICROS = 1_000_000


@dataclass(frozen=True)
class RateLimit:
    per_second: float
    burst: int

    @property
    def interval_us(self) -> int:
        """One token's worth of time."""
        return max(1, round(MICROS / self.per_second))

    @property
    def tolerance_us(self) -> int:
        """How far ahead of now the arrival time may be for a request to be served."""
        return (self.burst - 1) * self.interval_us


class Spend(Enum):
    REFILLED = "refilled"  # the bucket is full: the arrival time starts again from now
    ADD = "add"  # tokens are left: the arrival time moves one interval later


@dataclass(frozen=True)
class Decision:
    spend: Spend | None  # None: refused
    retry_after_seconds: int = 0


def decide(arrival_us: int | None, now_us: int, limit: RateLimit) -> Decision:
    """What a request at `now_us` does to a bucket whose arrival time is `arrival_us`
    (None: a key never used)."""
    if arrival_us is None or arrival_us < now_us:
        return Decision(Spend.REFILLED)
    if arrival_us <= now_us + limit.tolerance_us:
        return Decision(Spend.ADD)
    wait_us = arrival_us - limit.tolerance_us - now_us
    return Decision(None, retry_after_seconds=max(1, math.ceil(wait_us / MICROS)))
