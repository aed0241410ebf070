"""boto3 clients with the service's retry and timeout policy.

Endpoints come from the standard variables (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>),
so the same code runs against AWS and the local cloud.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Throttling and 5xx are retried by botocore with backoff; callers see only what is left.
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=3,
    read_timeout=10,
)


@cache
def client(service: str, *, total_attempts: int | None = None) -> Any:
    """A client of `service`; `total_attempts` (the first call included) overrides the retry
    budget for calls whose failures the caller handles better (the next subnet, the next type)."""
    config = RETRY_CONFIG
    if total_attempts is not None:
        config = config.merge(Config(retries={"mode": "standard", "total_max_attempts": total_attempts}))
    return boto3.session.Session().client(service, config=config)  # type: ignore[call-overload]


@cache
def table(name: str) -> Any:
    return boto3.session.Session().resource("dynamodb", config=RETRY_CONFIG).Table(name)


def reset_clients() -> None:
    """Forget cached clients (tests that switch endpoints or credentials)."""
    client.cache_clear()
    table.cache_clear()
