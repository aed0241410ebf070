"""boto3 clients with the service's retry and timeout policy, all from one session.

One session per process: each new session loads botocore's endpoint data and service
models again, about 50 ms of CPU per client, paid before a Lambda's first answer and
before the worker's first write.

Endpoints come from the standard variables (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>),
so the same code runs against AWS and the local cloud.
"""

from __future__ import annotations

import threading
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
# A session is not thread-safe; the clients made from it are.
_creating = threading.Lock()


@cache
def session() -> boto3.session.Session:
    return boto3.session.Session()


def _config(total_attempts: int | None) -> Config:
    """`total_attempts` (the first call included) overrides the retry budget, for calls
    whose failures the caller handles better (the next subnet, the next heartbeat)."""
    if total_attempts is None:
        return RETRY_CONFIG
    return RETRY_CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": total_attempts}))


@cache
def client(service: str, *, total_attempts: int | None = None) -> Any:
    with _creating:
        return session().client(service, config=_config(total_attempts))  # type: ignore[call-overload]


@cache
def table(name: str, *, total_attempts: int | None = None) -> Any:
    with _creating:
        return session().resource("dynamodb", config=_config(total_attempts)).Table(name)


def region() -> str:
    return session().region_name or "us-east-1"


def reset_clients() -> None:
    """Forget the session and its clients (tests that switch endpoints or credentials)."""
    client.cache_clear()
    table.cache_clear()
    session.cache_clear()
