"""Running the reaper in tests, and counting what it reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobs import aws
from services.reaper.logic import ReapReport, reap
from services.reaper.settings import Settings
from tests.support.world import World


def run_reaper(world: World, *, now: datetime | None = None, **overrides: Any) -> ReapReport:
    settings: Settings = world.settings.model_copy(update=overrides) if overrides else world.settings
    return reap(world.context(**overrides), settings, now)


@dataclass
class ReadCount:
    items: int = 0
    calls: dict[str, int] = field(default_factory=dict)


@contextmanager
def counting_reads(world: World) -> Iterator[ReadCount]:
    """Items DynamoDB returns to reads (Query, GetItem, Scan, BatchGetItem), counted at the
    client, whoever makes the call."""
    count = ReadCount()
    client = aws.table(world.settings.jobs_table_name).meta.client

    def after_call(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        name = model.name
        count.calls[name] = count.calls.get(name, 0) + 1
        if name in ("Query", "Scan"):
            count.items += int(parsed.get("ScannedCount", parsed.get("Count", 0)))
        elif name == "GetItem":
            count.items += 1 if parsed.get("Item") else 0
        elif name == "BatchGetItem":
            count.items += sum(len(items) for items in parsed.get("Responses", {}).values())

    client.meta.events.register("after-call.dynamodb", after_call)
    try:
        yield count
    finally:
        client.meta.events.unregister("after-call.dynamodb", after_call)
