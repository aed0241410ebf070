"""The EventBridge schedule: calls a function with a Scheduled Event at a fixed rate.

The rule, its rate and its target come from EventBridge (local_cloud/wiring.py); the local
cloud may run the rate faster, since EventBridge's shortest, a minute, is long on a laptop.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from local_cloud.lambda_runtime import ACCOUNT_ID

logger = logging.getLogger(__name__)


def scheduled_event(rule_arn: str, region: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class Scheduler:
    def __init__(
        self,
        invoke: Callable[[dict[str, Any]], Any],
        *,
        interval_seconds: float,
        rule_arn: str,
        region: str,
        after_run: Callable[[], None] | None = None,
    ) -> None:
        self._invoke = invoke
        self.interval_seconds = interval_seconds
        self.rule_arn = rule_arn
        self._region = region
        self._after_run = after_run
        self.runs = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        # A rate schedule fires first one period after it is created.
        while not self._stopping.wait(self.interval_seconds):
            self.runs += 1
            try:
                self._invoke(scheduled_event(self.rule_arn, self._region))
            except Exception:  # EventBridge retries on the next tick, so does this
                logger.exception("scheduled invocation failed")
            if self._after_run is not None:
                self._after_run()
