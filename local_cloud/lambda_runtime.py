"""Calls Lambda handlers in this process the way the Lambda service would.

Each function is loaded lazily from its Terraform handler string. Invocations are
serialised by one lock: a Lambda execution environment runs one invocation at a time, and
Powertools keeps per-invocation state (metrics, logger keys) in class attributes that
the three functions would otherwise share across threads.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = "123456789012"
logger = logging.getLogger(__name__)

_INVOCATION_LOCK = threading.Lock()


@dataclass
class FakeLambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    region: str
    timeout_seconds: float
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaFunction:
    """One function: a handler string, loaded on first use (its cold start)."""

    def __init__(self, name: str, handler: str, *, region: str, timeout_seconds: float = 30) -> None:
        self.name = name
        self.handler = handler
        self.region = region
        self.timeout_seconds = timeout_seconds
        self._callable: Callable[[Any, Any], Any] | None = None
        self.invocations = 0
        self.errors = 0

    def load(self) -> Callable[[Any, Any], Any]:
        if self._callable is None:
            module_name, _, attribute = self.handler.rpartition(".")
            self._callable = getattr(importlib.import_module(module_name), attribute)
        return self._callable

    def invoke(self, event: Any, request_id: str | None = None) -> Any:
        """Run the handler; an exception propagates as the Lambda service reports it: raised."""
        handler = self.load()
        context = FakeLambdaContext(
            function_name=self.name,
            region=self.region,
            timeout_seconds=self.timeout_seconds,
            aws_request_id=request_id or str(uuid.uuid4()),
        )
        with _INVOCATION_LOCK:
            self.invocations += 1
            try:
                return handler(event, context)
            except Exception:
                self.errors += 1
                logger.exception("function %s failed", self.name)
                raise
