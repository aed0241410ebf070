"""Logging, metrics and tracing set-up for every principal, in one place.

The Lambdas log and count through Powertools: the service name and the metrics namespace
come from POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE, which Terraform sets
per function; `traced` wraps a handler in the X-Ray tracer only where it traces. The
worker logs as `WORKER_SERVICE` and sends its metrics itself (worker/metrics.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger

if TYPE_CHECKING:
    from aws_lambda_powertools import Metrics

WORKER_SERVICE = "replication-worker"
Handler = TypeVar("Handler", bound=Callable[..., Any])


@cache
def service_logger() -> Logger:
    return Logger()


@cache
def service_metrics() -> Metrics:
    from aws_lambda_powertools import Metrics  # the worker never pays for this import

    return Metrics()


@cache
def worker_logger() -> Logger:
    return Logger(service=WORKER_SERVICE)


def tracing_enabled() -> bool:
    """In Lambda, unless POWERTOOLS_TRACE_DISABLED says otherwise."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() in ("1", "true", "yes", "on")
    return not disabled and "LAMBDA_TASK_ROOT" in os.environ


def traced(handler: Handler) -> Handler:
    """`handler` under Powertools' tracer where it traces. The tracer imports the X-Ray SDK
    even when tracing is off, so it is only imported when it will trace."""
    if not tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer

    return Tracer().capture_lambda_handler(handler)  # type: ignore[return-value]
