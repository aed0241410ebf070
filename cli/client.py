"""HTTP client of the service's API (stdlib urllib: the CLI needs no other dependency).

Transient failures (connection errors, timeouts, 502/503/504) are retried with backoff;
a submit is retried with the same Idempotency-Key, so a retry never makes a second job.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "seren-remote-cli/1.1"


class ApiError(Exception):
    """The API answered with an error (its message is the API's `error` field)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TransientError(Exception):
    """The API could not be reached or answered with a passing failure."""


@dataclass
class ApiClient:
    base_url: str
    api_key: str | None
    timeout_seconds: float = 15.0
    attempts: int = 4
    backoff_seconds: float = 0.5
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"the API URL must start with http:// or https://, not {self.base_url!r}")

    def submit(self, payload: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        return self._call("POST", "/jobs", body=payload, headers={"Idempotency-Key": idempotency_key})

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{quote(job_id, safe='')}")

    def jobs(
        self, *, status: str | None = None, limit: int = 20, next_token: str | None = None
    ) -> dict[str, Any]:
        query = {"limit": str(limit)}
        if status:
            query["status"] = status
        if next_token:
            query["next_token"] = next_token
        return self._call("GET", "/jobs?" + urlencode(query))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{quote(job_id, safe='')}/cancel")

    def logs(self, job_id: str, limit: int = 100) -> list[str]:
        answer = self._call("GET", f"/jobs/{quote(job_id, safe='')}/logs?" + urlencode({"limit": limit}))
        return [str(line) for line in answer.get("logs", [])]

    def _call(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        last: TransientError | None = None
        for attempt in range(self.attempts):
            try:
                return self.request_once(method, path, body=body, headers=headers)
            except TransientError as exc:
                last = exc
                if attempt + 1 < self.attempts:
                    # Full jitter: many clients retrying at once do not come back at once.
                    self.sleep(random.uniform(0, self.backoff_seconds * 2**attempt))  # noqa: S311 (jitter)
        assert last is not None
        raise last

    def request_once(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        # The scheme is checked in __post_init__: http or https only.
        request = urllib.request.Request(  # noqa: S310
            self.base_url.rstrip("/") + path,
            data=data,
            method=method,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})},
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("x-api-key", self.api_key)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as answer:  # noqa: S310
                return _json(answer.read())
        except urllib.error.HTTPError as exc:
            payload = _json(exc.read())
            message = str(payload.get("error") or payload.get("message") or exc.reason)
            if exc.code in TRANSIENT_STATUSES and not (exc.code == 429 and method == "POST"):
                raise TransientError(f"HTTP {exc.code}: {message}") from exc
            raise ApiError(exc.code, message) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransientError(f"cannot reach {self.base_url}: {reason}") from exc


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"error": raw[:200].decode(errors="replace")}
    return value if isinstance(value, dict) else {"value": value}
