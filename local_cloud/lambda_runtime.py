"""Calls Lambda handlers in this process the way the Lambda service would.

Each function is what Lambda's configuration says (local_cloud/wiring.py): its handler
string, loaded on first use, its environment, memory and timeout. Invocations are
serialised by one lock: a Lambda execution environment runs one invocation at a time, and
Powertools keeps per-invocation state (metrics, logger keys) in class attributes that the
three functions would otherwise share across threads. The functions share this process's
environment, so each runs (and is loaded) with its own variables set and the previous
values put back afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from local_cloud.wiring import FunctionConfig

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
        qualifier = "" if self.function_version == "$LATEST" else f":{self.function_version}"
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}{qualifier}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LambdaFunction:
    """One function: a handler string, loaded on first use (its cold start)."""

    def __init__(
        self,
        name: str,
        handler: str,
        *,
        region: str,
        timeout_seconds: float = 30,
        memory_mb: int = 512,
        version: str = "$LATEST",
        environment: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.handler = handler
        self.region = region
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self.version = version
        self.environment = dict(environment or {})
        self._callable: Callable[[Any, Any], Any] | None = None
        self.invocations = 0
        self.errors = 0

    @classmethod
    def from_config(cls, config: FunctionConfig, *, region: str) -> LambdaFunction:
        return cls(
            config.name,
            config.handler,
            region=region,
            timeout_seconds=config.timeout_seconds,
            memory_mb=config.memory_mb,
            version=config.qualifier,
            environment=config.environment,
        )

    def load(self) -> Callable[[Any, Any], Any]:
        if self._callable is None:
            module_name, _, attribute = self.handler.rpartition(".")
            with _INVOCATION_LOCK, _environment(self.environment):
                self._callable = getattr(importlib.import_module(module_name), attribute)
        return self._callable

    def invoke(self, event: Any, request_id: str | None = None) -> Any:
        """Run the handler; an exception propagates as the Lambda service reports it: raised."""
        handler = self.load()
        context = FakeLambdaContext(
            function_name=self.name,
            region=self.region,
            timeout_seconds=self.timeout_seconds,
            memory_limit_in_mb=self.memory_mb,
            function_version=self.version,
            aws_request_id=request_id or str(uuid.uuid4()),
        )
        with _INVOCATION_LOCK, _environment(self.environment):
            self.invocations += 1
            try:
                return handler(event, context)
            except Exception:
                self.errors += 1
                logger.exception("function %s failed", self.name)
                raise
