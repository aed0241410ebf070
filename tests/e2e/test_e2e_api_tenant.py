"""Tenants over real HTTP to the local stack: status lists past a long history, a key's
request budget, Idempotency-Key after the job ended, deadline_at, another owner's job."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import boto3

from jobs import clock
from jobs.api_keys import ApiKeyStore, hash_key
from jobs.dynamo_values import to_dynamo
from jobs.record import Job
from jobs.spec import DEFAULT_JOB_TIMEOUT_SECONDS
from jobs.states import JobStatus
from local_cloud.postgres import LocalPostgres
from tests.support.e2e import RunningStack


def _table(stack: RunningStack, name: str) -> Any:
    return boto3.resource(
        "dynamodb",
        endpoint_url=stack.info["aws_endpoint_url"],
        region_name=stack.info["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).Table(name)


def _new_key(stack: RunningStack, owner: str) -> str:
    name = stack.info["api_keys_table_name"]
    return ApiKeyStore(name, _table(stack, name)).create(owner).key


def _call(stack: RunningStack, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
    request = urllib.request.Request(  # noqa: S310 - the local stack's http:// endpoint
        stack.url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"x-api-key": key, "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read() or b"null"), answer.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), exc.headers


def test_a_status_list_over_a_long_history_and_its_pages(stack: RunningStack) -> None:
    """Ended jobs only: the stack's reaper would act on unfinished ones."""
    key = _new_key(stack, "history-owner")
    now = clock.now()
    ids: dict[JobStatus, list[str]] = {JobStatus.COMPLETED: [], JobStatus.FAILED: []}
    with _table(stack, stack.info["table_name"]).batch_writer() as writer:
        for n in range(303):
            status = JobStatus.FAILED if n % 100 == 0 else JobStatus.COMPLETED
            created = clock.iso(now - timedelta(hours=1) + timedelta(seconds=n))
            job = Job(
                job_id=f"00000000-0000-4000-9000-{n:012d}",
                owner="history-owner",
                trace_id="00000000-0000-4000-9000-000000000000",
                schema_version="1.1",
                command="validate",
                status=status,
                source="postgresql://source.example.com:5432/shop",
                target="postgresql://target.example.com:5432/shop",
                created_at=created,
                updated_at=created,
                expires_at=clock.epoch(now) + 86400,
            )
            writer.put_item(Item=to_dynamo(job.to_item()))
            ids[status].append(job.job_id)
    status, page, _ = _call(stack, key, "GET", "/jobs?status=cancelled&limit=1")
    assert (status, page) == (200, {"jobs": [], "next_token": None})
    seen: list[str] = []
    path = "/jobs?status=failed&limit=2"
    while True:
        status, page, _ = _call(stack, key, "GET", path)
        assert status == 200, page
        seen += [job["job_id"] for job in page["jobs"]]
        if not page["next_token"]:
            break
        path = f"/jobs?status=failed&limit=2&next_token={page['next_token']}"
    assert seen == ids[JobStatus.FAILED][::-1]


def test_a_key_past_its_budget_gets_429_with_retry_after_and_another_key_is_served(
    stack: RunningStack,
) -> None:
    flooded = _new_key(stack, "flooded-owner")
    other = _new_key(stack, "quiet-owner")
    # The flooded key's bucket, as a flood leaves it: its next token an hour away.
    an_hour_on = int((clock.now() + timedelta(hours=1, seconds=stack_tolerance())).timestamp() * 1_000_000)
    _table(stack, stack.info["api_keys_table_name"]).update_item(
        Key={"key_hash": hash_key(flooded)},
        UpdateExpression="SET rate_arrival_us = :t",
        ExpressionAttributeValues={":t": an_hour_on},
    )
    status, body, headers = _call(stack, flooded, "GET", "/jobs")
    assert status == 429 and set(body) == {"error"}
    assert 3590 <= int(headers["Retry-After"]) <= 3600
    status, body, _ = _call(stack, other, "GET", "/jobs")
    assert status == 200 and body == {"jobs": [], "next_token": None}


def stack_tolerance() -> float:
    """The local stack's burst tolerance in seconds (local_cloud.stack: 1000/s, burst 10000)."""
    return (10000 - 1) / 1000


def test_idempotency_key_after_the_job_ended(stack: RunningStack, source: LocalPostgres) -> None:
    body = {
        "schema_version": "1.1",
        "command": "validate",
        "source_url": source.url("shop"),
        "target_url": source.url("shop"),
        "options": {"enable_sync": False},
    }
    headers = {"Idempotency-Key": "after-the-end"}
    status, first = stack.api("POST", "/jobs", body, headers)
    assert status == 201, first
    job, _ = stack.follow(first["job_id"], timeout=90)
    assert job["status"] == "completed", (job["error"], job.get("logs"))
    assert job["deadline_at"] == clock.iso(
        clock.parse_iso(job["started_at"]) + timedelta(seconds=DEFAULT_JOB_TIMEOUT_SECONDS)
    )
    status, again = stack.api("POST", "/jobs", body, headers)
    assert status == 201 and again["job_id"] == first["job_id"]
    status, other = stack.api("POST", "/jobs", {**body, "command": "verify"}, headers)
    assert status == 422 and "'after-the-end'" in other["error"], other


def test_another_owners_job_is_answered_as_no_job(stack: RunningStack, source: LocalPostgres) -> None:
    outsider = _new_key(stack, "outsider-owner")
    job_id = stack.submit("validate", source.url("shop"), source.url("shop"))
    missing = "0b5e6c1f-0000-4000-8000-000000000000"
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/logs"):
        answers = [_call(stack, outsider, "GET", p)[:2] for p in (path, path.replace(job_id, missing))]
        assert answers == [(404, {"error": "Job not found"})] * 2
    job, _ = stack.follow(job_id, timeout=90)  # its owner's key still sees it
    assert job["job_id"] == job_id
