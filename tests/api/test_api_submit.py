"""POST /jobs: the 1.0 contract, validation, host policy, idempotency, the per-owner cap, auth."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from jobs.states import JobStatus
from tests.support.api import SOURCE_URL, TARGET_URL, V1_BODY, ApiClient, ApiWorld


def _items(world: ApiWorld, table: str = "test-jobs") -> list[dict[str, Any]]:
    """The job items (not the owner ledger's)."""
    return [item for item in world.dynamodb.scan(TableName=table)["Items"] if "status" in item]


def test_v1_submit_answers_exactly_the_upstream_shape(world: ApiWorld) -> None:
    answer = world.alice.submit(V1_BODY)
    assert answer.status == 201
    assert set(answer.body) == {"job_id", "trace_id", "status"}
    assert answer.body["status"] == "provisioning"
    uuid.UUID(answer.body["job_id"])
    uuid.UUID(answer.body["trace_id"])
    job = world.store.get(answer.body["job_id"])
    assert job is not None and job.status is JobStatus.PENDING and job.owner == "alice"
    assert job.filter.include_databases == ["db1"] and job.filter.exclude_tables == ["db1.audit_log"]
    assert job.options.estimated_size_bytes == 123456789 and job.options.enable_sync is True


def test_v1_get_answers_every_upstream_field(world: ApiWorld) -> None:
    job_id = world.alice.submit(V1_BODY).body["job_id"]
    answer = world.alice.get(job_id)
    assert answer.status == 200
    upstream = {"job_id", "trace_id", "status", "created_at", "started_at", "completed_at", "error"}
    assert upstream | {"progress", "log_url"} <= set(answer.body)
    extras = {"command", "source", "target", "updated_at", "heartbeat_at", "exit_code", "attempt"}
    assert extras <= set(answer.body)
    assert answer.body["status"] == "provisioning"
    assert answer.body["created_at"].endswith("Z")
    assert answer.body["started_at"] is None and answer.body["completed_at"] is None
    assert answer.body["progress"] == {
        "message": "",
        "current_database": None,
        "databases_completed": 0,
        "databases_total": 0,
    }
    assert answer.body["source"] == "postgresql://source.example.com:5432/shop"
    assert answer.body["target"] == "postgresql://db.serendb.com:5432/shop"
    assert "s3cret" not in json.dumps(answer.body)


def test_seed_readme_curl_body_without_schema_version(
    world: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.api.resources import resources

    monkeypatch.setenv("ALLOWED_TARGET_SUFFIXES", "")  # the seed's hosts are "source" and "target"
    resources.cache_clear()
    body = {
        "command": "init",
        "source_url": "postgresql://user:pass@source:5432/db",
        "target_url": "postgresql://user:pass@target:5432/db",
        "filter": {},
        "options": {},
    }
    answer = world.alice.submit(body, headers={"Content-Type": "application/json"})
    assert answer.status == 201, answer.body
    assert answer.body["status"] == "provisioning"
    assert world.alice.get(answer.body["job_id"]).body["schema_version"] == "1.0"


def test_newer_schema_sees_the_full_vocabulary(world: ApiWorld) -> None:
    answer = world.alice.submit({**V1_BODY, "schema_version": "1.1"})
    assert answer.status == 201 and answer.body["status"] == "pending"


def test_newer_client_fields_are_kept(world: ApiWorld) -> None:
    body = {
        **V1_BODY,
        "command": "VERIFY",
        "filter": {"exclude_databases": ["tmp"], "include_tables": ["db1.orders", "db1.public.items"]},
        "options": {"job_timeout_seconds": 3600, "log_level": "DEBUG"},
    }
    job_id = world.alice.submit(body).body["job_id"]
    job = world.store.get(job_id)
    assert job is not None and job.command == "verify"
    assert job.filter.exclude_databases == ["tmp"]
    assert job.filter.include_tables == ["db1.orders", "db1.public.items"]
    assert job.options.job_timeout_seconds == 3600 and job.options.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"options": {"bogus_option": True}}, "options.bogus_option"),
        ({"options": {"drop_existing": "yes"}}, "options.drop_existing"),
        ({"options": {"job_timeout_seconds": -(1 << 63) - 1}}, "options.job_timeout_seconds"),
        ({"options": {"job_timeout_seconds": 1 << 64}}, "options.job_timeout_seconds"),
        ({"options": {"log_level": "info;rm"}}, "options.log_level"),
        ({"target_project_id": "p1"}, "seren_api_key"),
        ({"target_databases": ["shop"]}, "target_project_id"),
        ({"filter": {"include_databases": ["bad name;"]}}, "filter.include_databases"),
        ({"filter": {"include_databases": [f"d{i}" for i in range(101)]}}, "filter.include_databases"),
        ({"command": "drop"}, "command"),
        ({"schema_version": "9.9"}, "schema_version"),
        ({"source_url": "mysql://u:p@h:3306/db"}, "source_url"),
        ({"target_url": "postgresql://u:p@h:70000/db"}, "target_url"),
        ({"target_url": "postgresql://u:p@a@db.serendb.com/db"}, "target_url"),
        ({"source_url": "postgresql://u:p@h/db;drop"}, "source_url"),
        ({"source_url": "postgresql://u:p@h"}, "source_url"),
        ({"unknown_top_level": 1}, "unknown_top_level"),
    ],
)
def test_invalid_spec_is_400_naming_the_field(world: ApiWorld, change: dict[str, Any], named: str) -> None:
    answer = world.alice.submit({**V1_BODY, **change})
    assert answer.status == 400
    assert set(answer.body) == {"error"}
    assert named in answer.body["error"]
    assert "s3cret" not in answer.body["error"]


def test_missing_field_is_named(world: ApiWorld) -> None:
    body = {k: v for k, v in V1_BODY.items() if k != "target_url"}
    answer = world.alice.submit(body)
    assert answer.status == 400 and "target_url" in answer.body["error"]


@pytest.mark.parametrize(
    ("source", "target", "rule"),
    [
        (SOURCE_URL, "postgresql://u:p@db.example.com/db", "serendb.com"),
        ("postgresql://u:p@169.254.169.254/db", TARGET_URL, "metadata"),
        ("postgresql://u:p@169.254.10.1/db", TARGET_URL, "link-local"),
        ("postgresql://u:p@[fd00:ec2::254]/db", TARGET_URL, "metadata"),
        ("postgresql://u:p@127.0.0.1/db", TARGET_URL, "loopback"),
        ("postgresql://u:p@localhost/db", TARGET_URL, "loopback"),
        ("postgresql://u:p@10.1.2.3/db", TARGET_URL, "private"),
        ("postgresql://u:p@192.168.0.4/db", TARGET_URL, "private"),
    ],
)
def test_host_policy_is_400_naming_the_rule(world: ApiWorld, source: str, target: str, rule: str) -> None:
    answer = world.alice.submit({**V1_BODY, "source_url": source, "target_url": target})
    assert answer.status == 400
    assert rule in answer.body["error"]
    assert _items(world) == []


def test_loopback_allowed_by_configuration(world: ApiWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.api.resources import resources

    monkeypatch.setenv("ALLOW_LOOPBACK_HOSTS", "true")
    monkeypatch.setenv("ALLOWED_TARGET_SUFFIXES", "")
    resources.cache_clear()
    body = {
        **V1_BODY,
        "source_url": "postgresql://u:p@127.0.0.1:5433/db",
        "target_url": "postgresql://u:p@localhost/db",
    }
    assert world.alice.submit(body).status == 201


def test_idempotent_retry_returns_the_same_job_and_creates_nothing(world: ApiWorld) -> None:
    first = world.alice.submit(V1_BODY, headers={"Idempotency-Key": "retry-1"})
    again = world.alice.submit(V1_BODY, headers={"idempotency-key": "retry-1"})
    assert first.status == again.status == 201
    assert first.body == again.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(_items(world)) == 1


def test_idempotency_key_reused_with_another_body_is_422(world: ApiWorld) -> None:
    world.alice.submit(V1_BODY, headers={"Idempotency-Key": "k"})
    answer = world.alice.submit({**V1_BODY, "command": "verify"}, headers={"Idempotency-Key": "k"})
    assert answer.status == 422
    assert answer.body == {
        "error": "Idempotency-Key 'k' was already used with a different request; "
        "send this one with another key"
    }
    # the URLs are part of the request: a different password is a different request
    other_pw = {**V1_BODY, "source_url": SOURCE_URL.replace("s3cret-test-pw", "other-test-pw")}
    assert world.alice.submit(other_pw, headers={"Idempotency-Key": "k"}).status == 422
    assert len(_items(world)) == 1


def test_same_idempotency_key_of_two_owners_makes_two_jobs(world: ApiWorld) -> None:
    a = world.alice.submit(V1_BODY, headers={"Idempotency-Key": "shared"})
    b = world.bob.submit(V1_BODY, headers={"Idempotency-Key": "shared"})
    assert a.status == b.status == 201 and a.body["job_id"] != b.body["job_id"]


def test_without_idempotency_key_each_post_is_a_new_job(world: ApiWorld) -> None:
    ids = {world.alice.submit(V1_BODY).body["job_id"] for _ in range(3)}
    assert len(ids) == 3


def test_fingerprint_is_stored_but_never_the_urls(world: ApiWorld) -> None:
    job_id = world.alice.submit(V1_BODY, headers={"Idempotency-Key": "fp"}).body["job_id"]
    job = world.store.get(job_id)
    assert job is not None and job.request_fingerprint
    assert job.request_fingerprint.startswith("hmac-sha256:")


def test_per_owner_cap_is_429_naming_the_cap(world: ApiWorld) -> None:
    for i in range(5):
        assert world.alice.submit(V1_BODY, headers={"Idempotency-Key": f"cap-{i}"}).status == 201
    answer = world.alice.submit(V1_BODY)
    assert answer.status == 429 and "5" in answer.body["error"]
    # a retry of an accepted job is still answered at the cap; other owners are not limited
    assert world.alice.submit(V1_BODY, headers={"Idempotency-Key": "cap-0"}).status == 201
    assert world.bob.submit(V1_BODY).status == 201


def test_finished_jobs_do_not_count_against_the_cap(world: ApiWorld) -> None:
    ids = [world.alice.submit(V1_BODY).body["job_id"] for _ in range(5)]
    assert world.alice.cancel(ids[0]).status == 202
    assert world.alice.submit(V1_BODY).status == 201


def test_body_over_16_kib_is_413(world: ApiWorld) -> None:
    padded = {**V1_BODY, "padding": "x" * (16 * 1024)}
    answer = world.alice.submit(padded)
    assert answer.status == 413 and set(answer.body) == {"error"}
    encoded = base64.b64encode(json.dumps(padded).encode()).decode()
    from tests.support.api import http_event, invoke

    event = http_event(
        "POST", "/jobs", body=encoded, headers={"x-api-key": world.alice.key or ""}, base64_body=True
    )
    assert invoke(event).status == 413


def test_base64_body_is_accepted(world: ApiWorld) -> None:
    from tests.support.api import http_event, invoke

    encoded = base64.b64encode(json.dumps(V1_BODY).encode()).decode()
    event = http_event(
        "POST", "/jobs", body=encoded, headers={"x-api-key": world.alice.key or ""}, base64_body=True
    )
    assert invoke(event).status == 201


@pytest.mark.parametrize("header", ["x-api-key", "X-API-KEY", "X-Api-Key"])
def test_api_key_header_in_any_case(world: ApiWorld, header: str) -> None:
    client = ApiClient(None)
    assert client.submit(V1_BODY, headers={header: world.alice.key or ""}).status == 201


@pytest.mark.parametrize("key", [None, "", "srk_wrong", "x" * 5000, "ключ"])
def test_missing_or_wrong_key_is_401(world: ApiWorld, key: str | None) -> None:
    client = ApiClient(None)
    headers = {"x-api-key": key} if key is not None else {}
    for answer in (
        client.submit(V1_BODY, headers=headers),
        client.request("POST", "/jobs", raw_body="{not json", headers=headers),
        client.request("GET", "/jobs", headers=headers),
        client.request("GET", f"/jobs/{uuid.uuid4()}", headers=headers),
    ):
        assert answer.status == 401 and answer.body == {"error": "Unauthorized"}


def test_revoked_key_is_401(world: ApiWorld) -> None:
    new = world.keys.create("carol")
    client = ApiClient(new.key)
    assert client.submit(V1_BODY).status == 201
    assert world.keys.revoke(new.record.key_id)
    assert client.submit(V1_BODY).status == 401


def test_submission_metric_names_the_command(world: ApiWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world.alice.submit({**V1_BODY, "command": "Validate"})
    world.alice.submit({**V1_BODY, "options": {"nope": 1}})
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    submitted = [m for m in emf if "JobsSubmitted" in m]
    rejected = [m for m in emf if "RequestsRejected" in m]
    assert submitted and submitted[0]["command"] == "validate"
    assert rejected and rejected[0]["reason"] == "validation"
    assert "s3cret" not in json.dumps(emf)


def test_operator_maximum_run_time_refuses_longer_jobs_and_grants_it_for_the_longest(
    world: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.api.resources import resources

    monkeypatch.setenv("MAX_JOB_RUNTIME_SECONDS", "3600")
    resources.cache_clear()
    longer = world.alice.submit({**V1_BODY, "options": {"job_timeout_seconds": 3601}})
    assert longer.status == 400
    assert longer.body == {
        "error": "options.job_timeout_seconds: at most 3600 seconds here; 0 asks for that maximum"
    }
    longest = world.alice.submit({**V1_BODY, "options": {"job_timeout_seconds": 0}})
    assert longest.status == 201
    job = world.store.get(longest.body["job_id"])
    assert job is not None and job.options.runtime_limit(3600) == 3600
    assert world.alice.submit({**V1_BODY, "options": {"job_timeout_seconds": 3600}}).status == 201


def test_estimated_size_above_the_operator_cap_is_refused(
    world: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.api.resources import resources

    monkeypatch.setenv("MAX_ESTIMATED_SIZE_BYTES", str(100 * 1024**3))
    resources.cache_clear()
    big = world.alice.submit({**V1_BODY, "options": {"estimated_size_bytes": 100 * 1024**3 + 1}})
    assert big.status == 400
    assert "options.estimated_size_bytes: at most 107374182400 bytes" in big.body["error"]
    assert world.alice.submit({**V1_BODY, "options": {"estimated_size_bytes": 100 * 1024**3}}).status == 201
    assert world.alice.submit({**V1_BODY, "options": {}}).status == 201
