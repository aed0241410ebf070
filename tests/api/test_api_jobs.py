"""Reading, listing, cancelling, logs, tenant isolation, secrets at rest and error answers."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from jobs.progress import Progress
from jobs.states import JobStatus
from tests.support.api import API_KEYS_TABLE, JOBS_TABLE, TEST_PASSWORD, V1_BODY, ApiClient, ApiWorld

V11_BODY = {**V1_BODY, "schema_version": "1.1"}


def _submit(client: ApiClient, body: dict[str, Any] = V11_BODY) -> str:
    answer = client.submit(body)
    assert answer.status == 201, answer.body
    return str(answer.body["job_id"])


def _move(world: ApiWorld, job_id: str, *path: JobStatus, **fields: Any) -> None:
    """Walk the job through `path` as the launcher and worker would."""
    for status in path:
        job = world.store.get(job_id)
        assert job is not None
        assert world.store.transition(job_id, [job.status], status, set_fields=fields or None).ok


# -- GET /jobs/{id} -----------------------------------------------------------------------


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid", "..%2F..", "a" * 300, "123"])
def test_unknown_or_malformed_job_is_404(world: ApiWorld, job_id: str) -> None:
    answer = world.alice.get(job_id)
    assert answer.status == 404 and answer.body == {"error": "Job not found"}


def test_expired_job_is_404_before_ttl_deletion(world: ApiWorld) -> None:
    job_id = _submit(world.alice)
    world.dynamodb.update_item(
        TableName=JOBS_TABLE,
        Key={"job_id": {"S": job_id}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    assert world.alice.get(job_id).status == 404
    assert world.alice.list().body["jobs"] == []


def test_v1_client_sees_four_words_and_stops_on_hidden_outcomes(world: ApiWorld) -> None:
    job_id = _submit(world.alice, V1_BODY)
    _move(world, job_id, JobStatus.PROVISIONING)
    assert world.alice.get(job_id).body["status"] == "provisioning"
    _move(world, job_id, JobStatus.RUNNING)
    world.store.update_active(
        job_id, {"progress": Progress(message="copying", databases_total=2).model_dump()}
    )
    answer = world.alice.get(job_id).body
    assert answer["status"] == "running" and answer["progress"]["message"] == "copying"
    _move(world, job_id, JobStatus.TIMEOUT)
    answer = world.alice.get(job_id).body
    assert answer["status"] == "failed" and answer["error"] == "Job timed out"
    assert answer["completed_at"].endswith("Z")


def test_failed_job_shows_exit_code_and_last_log_lines(world: ApiWorld) -> None:
    job_id = _submit(world.alice)
    with world.job_log_writer(job_id) as writer:
        for i in range(60):
            writer.write(f"line {i}")
        writer.write(f"ERROR connecting to postgresql://replicator:{TEST_PASSWORD}@source/db")
    _move(world, job_id, JobStatus.PROVISIONING, JobStatus.RUNNING)
    assert world.store.transition(
        job_id, [JobStatus.RUNNING], JobStatus.FAILED, set_fields={"exit_code": 2, "error": "engine failed"}
    ).ok
    answer = world.alice.get(job_id).body
    assert answer["status"] == "failed" and answer["exit_code"] == 2 and answer["error"] == "engine failed"
    assert len(answer["logs"]) == 50 and answer["logs"][-1].startswith("ERROR connecting")
    assert TEST_PASSWORD not in json.dumps(answer)


def test_a_job_shows_how_its_current_instance_is_bought_once_launched(world: ApiWorld) -> None:
    job_id = _submit(world.alice)
    assert world.alice.get(job_id).body["capacity"] is None
    _move(world, job_id, JobStatus.PROVISIONING, capacity="spot", attempt=1)
    answer = world.alice.get(job_id).body
    assert (answer["capacity"], answer["attempt"]) == ("spot", 1)
    # The next attempt fell back to on-demand (no Spot capacity left).
    relaunched = world.store.update_active(
        job_id, {"capacity": "on-demand", "attempt": 2}, statuses=[JobStatus.PROVISIONING]
    )
    assert relaunched.ok
    assert world.alice.get(job_id).body["capacity"] == "on-demand"
    assert [job["capacity"] for job in world.alice.list().body["jobs"]] == ["on-demand"]


def test_running_job_has_no_logs_field(world: ApiWorld) -> None:
    job_id = _submit(world.alice)
    assert "logs" not in world.alice.get(job_id).body


# -- GET /jobs ------------------------------------------------------------------------------


def test_list_is_newest_first_with_pages_and_status_filter(world: ApiWorld) -> None:
    ids = []
    for _ in range(5):
        ids.append(_submit(world.alice))
        time.sleep(0.002)  # distinct created_at
    world.alice.cancel(ids[1])
    first = world.alice.list(limit="2")
    assert first.status == 200 and [j["job_id"] for j in first.body["jobs"]] == ids[::-1][:2]
    second = world.alice.list(limit="2", next_token=first.body["next_token"])
    third = world.alice.list(limit="2", next_token=second.body["next_token"])
    seen = [j["job_id"] for page in (first, second, third) for j in page.body["jobs"]]
    assert seen == ids[::-1]
    cancelled = world.alice.list(status="cancelled").body
    assert [j["job_id"] for j in cancelled["jobs"]] == [ids[1]] and cancelled["next_token"] is None


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"status": "done"}, "status"),
    ],
)
def test_list_bad_query_is_400(world: ApiWorld, query: dict[str, str], named: str) -> None:
    answer = world.alice.list(**query)
    assert answer.status == 400 and named in answer.body["error"]


def test_next_token_cannot_reach_another_owner(world: ApiWorld) -> None:
    for _ in range(3):
        _submit(world.bob)
    token = world.bob.list(limit="1").body["next_token"]
    assert token
    assert world.alice.list(next_token=token).status == 400
    assert world.alice.list(next_token="garbage!!").status == 400


# -- cancel ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((), "cancelled"),
        ((JobStatus.QUEUED,), "cancelled"),
        ((JobStatus.PROVISIONING,), "cancelled"),
        ((JobStatus.PROVISIONING, JobStatus.RUNNING), "cancelling"),
    ],
)
def test_cancel_by_status(world: ApiWorld, path: tuple[JobStatus, ...], expected: str) -> None:
    job_id = _submit(world.alice)
    _move(world, job_id, *path)
    answer = world.alice.cancel(job_id)
    assert answer.status == 202 and answer.body["status"] == expected
    job = world.store.get(job_id)
    assert job is not None and job.status.value == expected and job.cancel_requested_at


def test_second_cancel_of_a_running_job_is_accepted_again(world: ApiWorld) -> None:
    job_id = _submit(world.alice)
    _move(world, job_id, JobStatus.PROVISIONING, JobStatus.RUNNING)
    first = world.alice.cancel(job_id)
    second = world.alice.cancel(job_id)
    assert first.status == second.status == 202
    assert first.body["status"] == second.body["status"] == "cancelling"
    assert first.body["cancel_requested_at"] == second.body["cancel_requested_at"]


def test_cancelled_pending_job_is_never_launched(world: ApiWorld) -> None:
    job_id = _submit(world.alice)
    world.alice.cancel(job_id)
    # the launcher's write is conditional on the status it expects
    assert not world.store.transition(job_id, [JobStatus.PENDING], JobStatus.PROVISIONING).ok
    assert world.store.get_credentials(job_id) is None


@pytest.mark.parametrize("outcome", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMEOUT])
def test_cancel_of_ended_job_is_409(world: ApiWorld, outcome: JobStatus) -> None:
    job_id = _submit(world.alice)
    _move(world, job_id, JobStatus.PROVISIONING, JobStatus.RUNNING, outcome)
    answer = world.alice.cancel(job_id)
    assert answer.status == 409 and set(answer.body) == {"error"}
    job = world.store.get(job_id)
    assert job is not None and job.status is outcome


def test_v1_client_sees_a_cancelled_job_as_failed(world: ApiWorld) -> None:
    job_id = _submit(world.alice, V1_BODY)
    world.alice.cancel(job_id)
    answer = world.alice.get(job_id).body
    assert answer["status"] == "failed" and answer["error"] == "Job was cancelled"


def test_cancel_decides_again_when_the_status_moved_under_it(
    world: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs.store import JobStore

    job_id = _submit(world.alice)
    real_transition = JobStore.transition
    raced = []

    def launcher_wins_first(
        self: JobStore, jid: str, from_statuses: Any, to_status: JobStatus, **kw: Any
    ) -> Any:
        if not raced:  # the launcher moves the job just before our conditional write lands
            raced.append(True)
            assert real_transition(self, jid, [JobStatus.PENDING], JobStatus.PROVISIONING).ok
            assert real_transition(self, jid, [JobStatus.PROVISIONING], JobStatus.RUNNING).ok
        return real_transition(self, jid, from_statuses, to_status, **kw)

    monkeypatch.setattr(JobStore, "transition", launcher_wins_first)
    answer = world.alice.cancel(job_id)
    assert answer.status == 202 and answer.body["status"] == "cancelling"


# -- logs ------------------------------------------------------------------------------


def test_logs_are_newest_last_limited_and_redacted(world: ApiWorld) -> None:
    job_id = _submit(world.alice)
    assert world.alice.logs(job_id).body == {"job_id": job_id, "logs": []}
    with world.job_log_writer(job_id) as writer:
        for i in range(10):
            writer.write(f"step {i}")
        writer.write(
            f"connect postgresql://replicator:{TEST_PASSWORD}@db.serendb.com/shop password={TEST_PASSWORD}"
        )
    lines = world.alice.logs(job_id, limit="3").body["logs"]
    assert lines[:2] == ["step 8", "step 9"] and len(lines) == 3
    assert TEST_PASSWORD not in lines[2] and "db.serendb.com/shop" in lines[2]
    assert world.alice.logs(job_id, limit="0").status == 400


# -- tenant isolation ----------------------------------------------------------------------


def test_another_owner_sees_nothing(world: ApiWorld) -> None:
    job_id = _submit(world.alice)
    for answer in (world.bob.get(job_id), world.bob.cancel(job_id), world.bob.logs(job_id)):
        assert answer.status == 404 and answer.body == {"error": "Job not found"}
    assert world.bob.list().body == {"jobs": [], "next_token": None}
    job = world.store.get(job_id)
    assert job is not None and job.status is JobStatus.PENDING


# -- secrets at rest ------------------------------------------------------------------------


def _all_text(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.decode("latin-1") if isinstance(v, bytes) else str(v))


def test_no_attribute_holds_the_password_after_a_job_life(world: ApiWorld) -> None:
    ids = [_submit(world.alice) for _ in range(3)]
    while_pending = world.dynamodb.scan(TableName=JOBS_TABLE)["Items"]
    assert TEST_PASSWORD not in _all_text(while_pending)  # encrypted, never plaintext
    assert all("credentials" in item for item in while_pending if "status" in item)
    _move(world, ids[0], JobStatus.PROVISIONING, JobStatus.RUNNING, JobStatus.COMPLETED)
    _move(world, ids[1], JobStatus.PROVISIONING, JobStatus.RUNNING, JobStatus.FAILED)
    world.alice.cancel(ids[2])
    for table in (JOBS_TABLE, API_KEYS_TABLE):
        items = world.dynamodb.scan(TableName=table)["Items"]
        text = _all_text(items)
        assert TEST_PASSWORD not in text and "s3cret" not in text
    assert all("credentials" not in item for item in world.dynamodb.scan(TableName=JOBS_TABLE)["Items"])


def test_api_keys_are_stored_only_as_hashes(world: ApiWorld) -> None:
    text = _all_text(world.dynamodb.scan(TableName=API_KEYS_TABLE)["Items"])
    assert world.alice.key and world.alice.key not in text and world.alice.key[4:] not in text


# -- public routes and error answers -----------------------------------------------------------


def test_health_and_openapi_need_no_key(world: ApiWorld) -> None:
    assert world.anonymous.request("GET", "/health").body == {"status": "ok"}
    answer = world.anonymous.request("GET", "/openapi.json")
    assert answer.status == 200 and "/jobs/{job_id}/cancel" in answer.body["paths"]


def test_unknown_route_is_404_json(world: ApiWorld) -> None:
    answer = world.alice.request("GET", "/nothing/here")
    assert answer.status == 404 and set(answer.body) == {"error"}


def test_internal_fault_is_500_without_details_and_logs_the_request_id(
    world: ApiWorld, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from jobs.store import JobStore

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError(f"table exploded near postgresql://u:{TEST_PASSWORD}@db:5432/x")

    monkeypatch.setattr(JobStore, "owner_of", broken)
    from tests.support.api import http_event, invoke

    event = http_event("GET", f"/jobs/{uuid.uuid4()}", headers={"x-api-key": world.alice.key or ""})
    answer = invoke(event)
    assert answer.status == 500 and answer.body == {"error": "Internal server error"}
    [record] = [r for r in caplog.records if r.getMessage() == "internal error"]
    assert record.request_id == event["requestContext"]["requestId"]  # type: ignore[attr-defined]
    # The traceback is logged, redacted: a fault may quote a database URL.
    assert "table exploded" in record.traceback  # type: ignore[attr-defined]
    assert TEST_PASSWORD not in record.traceback  # type: ignore[attr-defined]
