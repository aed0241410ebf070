"""The stored request fingerprint no longer lets a reader of the item guess a password
offline: it is an HMAC under a KMS key only the API may use, and it is gone once the job ends."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest

from jobs.crypto import RequestMac
from jobs.spec import JobSpec
from jobs.states import JobStatus
from services.api.submit import canonical_request
from tests.support.api import SOURCE_URL, TEST_PASSWORD, V1_BODY, ApiWorld

DICTIONARY = ["password", "123456", "letmein", "hunter2", TEST_PASSWORD, "s3cret", "postgres"]


def _raw_item(world: ApiWorld, job_id: str) -> dict[str, object]:
    item = world.dynamodb.get_item(TableName="test-jobs", Key={"job_id": {"S": job_id}})["Item"]
    return {name: next(iter(value.values())) for name, value in item.items()}


def test_a_dictionary_attack_on_the_stored_fingerprint_finds_nothing(world: ApiWorld) -> None:
    job_id = world.alice.submit(V1_BODY, headers={"Idempotency-Key": "guess-me"}).body["job_id"]
    stored = _raw_item(world, job_id)["request_fingerprint"]
    # What the old unkeyed fingerprint let anyone do with the item's other fields: rebuild the
    # request for each guessed password and compare. The true password is in the dictionary.
    for guess in DICTIONARY:
        body = {**V1_BODY, "source_url": SOURCE_URL.replace(TEST_PASSWORD, guess)}
        spec = JobSpec.model_validate(body)
        canonical = canonical_request(spec)
        assert hashlib.sha256(canonical).hexdigest() not in str(stored)
    # Even the exact request under an HMAC key of the attacker's own gives another value.
    kms = boto3.client("kms")
    own_key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    assert RequestMac(own_key, kms).fingerprint(canonical_request(JobSpec.model_validate(V1_BODY))) != stored
    assert str(stored).startswith("hmac-sha256:")


def test_retries_still_match_and_a_reused_key_is_still_refused(world: ApiWorld) -> None:
    first = world.alice.submit(V1_BODY, headers={"Idempotency-Key": "k"})
    again = world.alice.submit(V1_BODY, headers={"Idempotency-Key": "k"})
    assert first.status == 201 and again.status == 201 and again.body["job_id"] == first.body["job_id"]
    other = {**V1_BODY, "source_url": SOURCE_URL.replace(TEST_PASSWORD, "another-pw")}
    assert world.alice.submit(other, headers={"Idempotency-Key": "k"}).status == 422


@pytest.mark.parametrize("outcome", [JobStatus.CANCELLED, JobStatus.COMPLETED, JobStatus.FAILED])
def test_after_the_job_ended_the_same_key_is_the_job_and_another_request_is_422(
    world: ApiWorld, outcome: JobStatus
) -> None:
    job_id = world.alice.submit(V1_BODY, headers={"Idempotency-Key": "late"}).body["job_id"]
    path = [JobStatus.PROVISIONING, JobStatus.RUNNING, outcome]
    for status in [outcome] if outcome is JobStatus.CANCELLED else path:
        job = world.store.get(job_id)
        assert job is not None and world.store.transition(job_id, [job.status], status).ok
    retry = world.alice.submit(V1_BODY, headers={"Idempotency-Key": "late"})
    assert retry.status == 201 and retry.body["job_id"] == job_id
    assert retry.headers["Idempotent-Replayed"] == "true"
    for other in ({**V1_BODY, "command": "verify"}, {**V1_BODY, "options": {"drop_existing": True}}):
        reuse = world.alice.submit(other, headers={"Idempotency-Key": "late"})
        assert reuse.status == 422 and "'late'" in reuse.body["error"], reuse.body
    assert world.store.get(job_id).command == "init"  # type: ignore[union-attr]
    item = _raw_item(world, job_id)
    # The credentials go with the end; the fingerprint (a MAC under the API's own key) stays,
    # so a late reuse of the key is still told from a retry.
    assert "credentials" not in item and str(item["request_fingerprint"]).startswith("hmac-sha256:")
    assert "fingerprint" not in json.dumps(world.alice.get(job_id).body)
