"""The write schedule: heartbeats always, progress early only within the hourly budget."""

from __future__ import annotations

from worker.schedule import BURST, Write, WriteSchedule
from worker.settings import DEFAULT_ITEM_WRITES_PER_HOUR


def schedule(**overrides: float) -> WriteSchedule:
    values: dict[str, float] = {
        "heartbeat_interval": 30,
        "progress_min_interval": 5,
        "writes_per_hour": DEFAULT_ITEM_WRITES_PER_HOUR,
        "start": 0.0,
    }
    values.update(overrides)
    return WriteSchedule(**values)  # type: ignore[arg-type]


def simulate(plan: WriteSchedule, seconds: float, progress_every: float, step: float = 0.25) -> list[float]:
    """Times of the writes made when the engine reports new progress every `progress_every` s."""
    writes: list[float] = []
    pending = False
    next_progress = 0.0
    now = plan.start
    while now < plan.start + seconds:
        if progress_every and now >= next_progress:
            pending = True
            next_progress += progress_every
        if plan.due(now, pending) is not None:
            plan.wrote(now)
            writes.append(now)
            pending = False
        now += step
    return writes


def test_a_quiet_engine_still_gets_a_heartbeat_every_interval() -> None:
    plan = schedule()
    assert plan.due(29.9, progress_pending=False) is None
    assert plan.due(30.0, progress_pending=False) is Write.HEARTBEAT
    writes = simulate(schedule(), 3600, progress_every=0)
    assert len(writes) == 119  # at 30 s, 60 s, ... 3570 s
    assert max(b - a for a, b in zip([0.0, *writes], writes, strict=False)) <= 30.25


def test_progress_waits_for_the_minimum_interval_since_the_last_write() -> None:
    plan = schedule()
    assert plan.due(4.9, progress_pending=True) is None
    assert plan.due(5.0, progress_pending=True) is Write.PROGRESS
    plan.wrote(5.0)
    assert plan.due(9.0, progress_pending=True) is None


def test_a_chatty_engine_stays_within_the_hourly_budget_and_never_misses_a_heartbeat() -> None:
    for hours in (1, 8):
        writes = simulate(schedule(), 3600 * hours, progress_every=0.5)
        assert len(writes) <= DEFAULT_ITEM_WRITES_PER_HOUR * hours + 1
        gaps = [b - a for a, b in zip([0.0, *writes], writes, strict=False)]
        assert max(gaps) <= 30.25


def test_progress_goes_out_early_in_a_burst_then_rides_on_heartbeats() -> None:
    writes = simulate(schedule(), 120, progress_every=0.5)
    early = [t for t in writes if t <= 5 * BURST + 0.5]
    assert len(early) == BURST  # the first progress changes are visible within seconds
    assert len(writes) <= BURST + 4


def test_a_progress_write_counts_as_the_heartbeat() -> None:
    plan = schedule()
    plan.wrote(20.0)  # progress at 20 s
    assert plan.due(45.0, progress_pending=False) is None
    assert plan.due(50.0, progress_pending=False) is Write.HEARTBEAT
