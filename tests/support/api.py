"""Driving the API Lambda in-process: API Gateway HTTP API (payload 2.0) events in,
decoded answers out."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from jobs.api_keys import ApiKeyStore
from jobs.job_logs import LogWriter, job_log_group
from jobs.store import JobStore

TEST_PASSWORD = "s3cret-test-pw"
SOURCE_URL = f"postgresql://replicator:{TEST_PASSWORD}@source.example.com:5432/shop"
TARGET_URL = f"postgresql://replicator:{TEST_PASSWORD}@db.serendb.com:5432/shop"

# upstream.md §1, verbatim apart from the URLs.
V1_BODY: dict[str, Any] = {
    "schema_version": "1.0",
    "command": "init",
    "source_url": SOURCE_URL,
    "target_url": TARGET_URL,
    "filter": {"include_databases": ["db1"], "exclude_tables": ["db1.audit_log"]},
    "options": {"drop_existing": False, "enable_sync": True, "estimated_size_bytes": 123456789},
}


@dataclass
class FakeContext:
    function_name: str = "api"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:api"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def http_event(
    method: str,
    path: str,
    *,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {"content-type": "application/json", **(headers or {})},
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": str(uuid.uuid4()),
            "stage": "$default",
            "timeEpoch": 0,
        },
        "body": body,
        "isBase64Encoded": base64_body,
    }


def invoke(event: dict[str, Any]) -> Answer:
    from services.api.handler import lambda_handler

    raw = lambda_handler(event, FakeContext())  # type: ignore[arg-type]
    text = raw.get("body") or ""
    try:
        body = json.loads(text) if text else None
    except json.JSONDecodeError:
        body = text
    return Answer(status=raw["statusCode"], body=body, headers=dict(raw.get("headers") or {}))


class ApiClient:
    def __init__(self, key: str | None) -> None:
        self.key = key

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        raw_body: str | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Answer:
        all_headers = {"x-api-key": self.key} if self.key else {}
        all_headers.update(headers or {})
        body = (
            raw_body if raw_body is not None else (json.dumps(json_body) if json_body is not None else None)
        )
        return invoke(http_event(method, path, body=body, headers=all_headers, query=query))

    def submit(self, body: dict[str, Any] | None = None, **kwargs: Any) -> Answer:
        return self.request("POST", "/jobs", json_body=body if body is not None else V1_BODY, **kwargs)

    def get(self, job_id: str) -> Answer:
        return self.request("GET", f"/jobs/{job_id}")

    def cancel(self, job_id: str) -> Answer:
        return self.request("POST", f"/jobs/{job_id}/cancel")

    def logs(self, job_id: str, **query: str) -> Answer:
        return self.request("GET", f"/jobs/{job_id}/logs", query=query or None)

    def list(self, **query: str) -> Answer:
        return self.request("GET", "/jobs", query=query or None)


JOBS_TABLE = "test-jobs"
API_KEYS_TABLE = "test-api-keys"
LOG_GROUP = "/test/workers"


@dataclass
class ApiWorld:
    alice: ApiClient
    bob: ApiClient
    anonymous: ApiClient
    store: JobStore
    keys: ApiKeyStore
    dynamodb: Any
    logs: Any
    log_group: str = LOG_GROUP

    def job_log_writer(self, job_id: str) -> LogWriter:
        """A worker's writer for `job_id`, into the job's own group (the launcher creates it)."""
        group = job_log_group(self.log_group, job_id)
        self.logs.create_log_group(logGroupName=group)
        return LogWriter(group, job_id)
