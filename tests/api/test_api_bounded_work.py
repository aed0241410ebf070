"""GET /jobs does work bounded by its page, never by the owner's history: the DynamoDB calls
of one request are counted on the jobs table's client (botocore's before-call event)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from jobs import aws, clock
from jobs.dynamo_values import to_dynamo
from jobs.record import Job
from jobs.states import JobStatus
from tests.support.api import JOBS_TABLE, V1_BODY, ApiWorld

HISTORY = 150


@pytest.fixture
def jobs_calls(world: ApiWorld) -> Iterator[Counter[str]]:
    """Operation name -> calls made on the jobs table since the last clear()."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    events = aws.table(JOBS_TABLE).meta.client.meta.events
    events.register("before-call.dynamodb", count)
    yield calls
    events.unregister("before-call.dynamodb", count)


def _put_history(
    world: ApiWorld, owner: str, count: int, status: JobStatus, *, start: int = 0, expired: bool = False
) -> list[str]:
    """`count` jobs of `owner` in `status`, one second apart from `start` (newest last)."""
    base = clock.now() - timedelta(days=1)
    now_epoch = clock.epoch(clock.now())
    ids = []
    with aws.table(JOBS_TABLE).batch_writer() as writer:
        for n in range(start, start + count):
            created = clock.iso(base + timedelta(seconds=n))
            job = Job(
                job_id=f"00000000-0000-4000-8000-{n:012d}",
                owner=owner,
                trace_id="00000000-0000-4000-8000-000000000000",
                schema_version="1.1",
                command="init",
                status=status,
                source="postgresql://source.example.com:5432/shop",
                target="postgresql://db.serendb.com:5432/shop",
                created_at=created,
                updated_at=created,
                expires_at=now_epoch - 60 if expired else now_epoch + 86400,
            )
            writer.put_item(Item=to_dynamo(job.to_item()))
            ids.append(job.job_id)
    return ids


def test_a_status_filter_is_one_query_whatever_the_history(world: ApiWorld, jobs_calls: Counter[str]) -> None:
    _put_history(world, "alice", HISTORY, JobStatus.COMPLETED)
    jobs_calls.clear()
    answer = world.alice.list(status="running", limit="1")
    assert answer.status == 200 and answer.body == {"jobs": [], "next_token": None}
    assert jobs_calls == Counter({"Query": 1})


def test_the_unfiltered_list_reads_one_page_past_expired_jobs(
    world: ApiWorld, jobs_calls: Counter[str]
) -> None:
    older = _put_history(world, "alice", 2, JobStatus.COMPLETED)
    _put_history(world, "alice", HISTORY, JobStatus.COMPLETED, start=2, expired=True)
    jobs_calls.clear()
    answer = world.alice.list(limit="1")
    assert answer.status == 200 and answer.body["jobs"] == []
    assert jobs_calls == Counter({"Query": 1})
    # The token goes on from where the read stopped: the older jobs are still reached.
    seen: list[str] = []
    token = answer.body["next_token"]
    while token:
        page = world.alice.list(limit="100", next_token=token).body
        seen += [job["job_id"] for job in page["jobs"]]
        token = page["next_token"]
    assert seen == older[::-1]


def test_status_pages_are_newest_first_and_go_on_with_their_token(world: ApiWorld) -> None:
    running = _put_history(world, "alice", 3, JobStatus.RUNNING)
    _put_history(world, "alice", 20, JobStatus.COMPLETED, start=3)
    newer_running = _put_history(world, "alice", 2, JobStatus.RUNNING, start=23)
    _put_history(world, "bob", 4, JobStatus.RUNNING, start=25)
    expected = (running + newer_running)[::-1]
    first = world.alice.list(status="running", limit="3").body
    assert [job["job_id"] for job in first["jobs"]] == expected[:3] and first["next_token"]
    second = world.alice.list(status="running", limit="3", next_token=first["next_token"]).body
    assert [job["job_id"] for job in second["jobs"]] == expected[3:]
    assert second["next_token"] is None
    # A status page's token positions only that owner's list in that status.
    assert world.bob.list(status="running", next_token=first["next_token"]).status == 400
    assert world.alice.list(status="completed", next_token=first["next_token"]).status == 400
    assert world.alice.list(next_token=first["next_token"]).status == 400


def test_a_job_leaves_its_status_list_when_its_status_changes(world: ApiWorld) -> None:
    answer = world.alice.submit({**V1_BODY, "schema_version": "1.1"})
    job_id = answer.body["job_id"]
    assert [job["job_id"] for job in world.alice.list(status="pending").body["jobs"]] == [job_id]
    assert world.alice.cancel(job_id).status == 202
    assert world.alice.list(status="pending").body["jobs"] == []
    assert [job["job_id"] for job in world.alice.list(status="cancelled").body["jobs"]] == [job_id]


@pytest.fixture
def jobs_reads(world: ApiWorld) -> Iterator[list[tuple[str, dict[str, Any], dict[str, Any]]]]:
    """(operation, request parameters but the key, answer) of each call on the jobs table."""
    reads: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    pending: list[tuple[str, dict[str, Any]]] = []

    def before(model: Any, params: dict[str, Any], **_: Any) -> None:
        sent = json.loads(params["body"])
        pending.append((model.name, {k: v for k, v in sent.items() if k != "Key"}))

    def after(model: Any, parsed: dict[str, Any], **_: Any) -> None:
        name, params = pending.pop()
        reads.append((name, params, parsed))

    events = aws.table(JOBS_TABLE).meta.client.meta.events
    events.register("before-call.dynamodb", before)
    events.register("after-call.dynamodb", after)
    yield reads
    events.unregister("before-call.dynamodb", before)
    events.unregister("after-call.dynamodb", after)


@pytest.mark.parametrize("route", ["get", "cancel", "logs"])
def test_another_owners_job_costs_the_same_work_as_no_job(
    world: ApiWorld, jobs_reads: list[tuple[str, dict[str, Any], dict[str, Any]]], route: str
) -> None:
    """The same calls with the same parameters, and nothing of the other owner's job read
    (its size, which varies, would be time spent on it): no timing tells the two apart."""
    bobs = world.bob.submit({**V1_BODY, "schema_version": "1.1"}).body["job_id"]
    missing = "0b5e6c1f-0000-4000-8000-000000000000"
    answers = []
    for job_id in (missing, bobs):
        jobs_reads.clear()
        answers.append(getattr(world.alice, route)(job_id))
        calls = [(name, params) for name, params, _ in jobs_reads]
        items = [answer.get("Item") for _, _, answer in jobs_reads]
        if job_id == missing:
            calls_for_missing = calls
            assert items == [None]
        else:
            assert calls == calls_for_missing
            assert items == [{"owner": "bob"}]
    assert [(a.status, a.body) for a in answers] == [(404, {"error": "Job not found"})] * 2
