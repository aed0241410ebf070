"""The per-owner cap under concurrent submits, over real HTTP to a moto server (its own
process, serving requests on threads), with the API handler running in one process per
request, as many Lambda containers would, all let go at the same moment."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import boto3
import pytest

from jobs import aws
from jobs.api_keys import ApiKeyStore
from local_cloud.moto_server import MotoServer
from local_cloud.resources import create_tables
from tests.support.api import API_KEYS_TABLE, JOBS_TABLE, LOG_GROUP, V1_BODY, Answer, ApiClient
from tests.support.aws_env import use_fake_aws

CAP = 3
SUBMITS = 25


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(Path(tmp_path_factory.mktemp("moto")) / "moto.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def alice(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiClient]:
    from services.api.resources import resources

    prefix = f"cap{id(monkeypatch)}"
    use_fake_aws(
        monkeypatch,
        AWS_ENDPOINT_URL=moto.url,
        JOBS_TABLE_NAME=f"{prefix}-{JOBS_TABLE}",
        API_KEYS_TABLE_NAME=f"{prefix}-{API_KEYS_TABLE}",
        WORKER_LOG_GROUP=LOG_GROUP,
        MAX_UNFINISHED_JOBS_PER_OWNER=str(CAP),
        API_KEY_BURST=str(2 * SUBMITS),  # the cap is under test here, not the key's request rate
        ALLOWED_TARGET_SUFFIXES="serendb.com",
        POWERTOOLS_SERVICE_NAME="api",
        POWERTOOLS_METRICS_NAMESPACE="RemoteReplicationTest",
        POWERTOOLS_TRACE_DISABLED="true",
    )
    session = boto3.session.Session()
    create_tables(
        session.client("dynamodb", endpoint_url=moto.url),
        jobs_table=f"{prefix}-{JOBS_TABLE}",
        api_keys_table=f"{prefix}-{API_KEYS_TABLE}",
    )
    kms = session.client("kms", endpoint_url=moto.url)
    monkeypatch.setenv("KMS_KEY_ID", kms.create_key()["KeyMetadata"]["KeyId"])
    mac_key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("REQUEST_MAC_KEY_ID", mac_key)
    resources.cache_clear()
    yield ApiClient(ApiKeyStore(f"{prefix}-{API_KEYS_TABLE}").create("alice").key)
    resources.cache_clear()
    aws.reset_clients()


def _submit_at(moment: float, key: str, headers: dict[str, str]) -> Answer:
    aws.reset_clients()  # a fresh "container": its own clients and connections
    time.sleep(max(0.0, moment - time.time()))
    return ApiClient(key).submit(V1_BODY, headers=headers)


def _submit_at_once(client: ApiClient, headers: list[dict[str, str]]) -> Counter[int]:
    assert client.key is not None
    moment = time.time() + 3  # every process started and waiting
    fork = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=len(headers), mp_context=fork) as pool:
        answers = list(pool.map(_submit_at, [moment] * len(headers), [client.key] * len(headers), headers))
    assert all(set(a.body) == {"error"} for a in answers if a.status != 201), answers
    return Counter(a.status for a in answers)


def test_concurrent_submits_of_one_owner_get_exactly_the_cap(alice: ApiClient) -> None:
    statuses = _submit_at_once(alice, [{} for _ in range(SUBMITS)])
    assert statuses == {201: CAP, 429: SUBMITS - CAP}
    assert len(alice.list().body["jobs"]) == CAP


def test_concurrent_retries_of_one_submit_make_one_job_and_take_one_place(alice: ApiClient) -> None:
    statuses = _submit_at_once(alice, [{"Idempotency-Key": "same"} for _ in range(SUBMITS)])
    assert statuses == {201: SUBMITS}
    assert len(alice.list().body["jobs"]) == 1
    # the other places are still free
    assert _submit_at_once(alice, [{} for _ in range(CAP)]) == {201: CAP - 1, 429: 1}
