"""The API Lambda on moto: tables, a KMS key, a worker log group and two owners' keys."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from jobs import aws
from jobs.api_keys import ApiKeyStore
from jobs.store import JobStore
from local_cloud.resources import create_tables
from tests.support.api import API_KEYS_TABLE, JOBS_TABLE, LOG_GROUP, ApiClient, ApiWorld
from tests.support.aws_env import use_fake_aws


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_aws(
        monkeypatch,
        JOBS_TABLE_NAME=JOBS_TABLE,
        API_KEYS_TABLE_NAME=API_KEYS_TABLE,
        WORKER_LOG_GROUP=LOG_GROUP,
        JOB_RETENTION_DAYS="30",
        MAX_UNFINISHED_JOBS_PER_OWNER="5",
        # Tests make requests far faster than a client: tests/api/test_api_rate_limit.py sets a small bucket.
        API_KEY_RATE_PER_SECOND="10000",
        API_KEY_BURST="100000",
        ALLOWED_TARGET_SUFFIXES="serendb.com",
        ALLOW_LOOPBACK_HOSTS="false",
        ALLOW_PRIVATE_HOSTS="false",
        POWERTOOLS_SERVICE_NAME="api",
        POWERTOOLS_METRICS_NAMESPACE="RemoteReplicationTest",
        POWERTOOLS_TRACE_DISABLED="true",
    )


@pytest.fixture
def world(api_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiWorld]:
    from services.api.resources import resources

    with mock_aws():
        aws.reset_clients()
        resources.cache_clear()
        dynamodb = boto3.client("dynamodb")
        create_tables(dynamodb, jobs_table=JOBS_TABLE, api_keys_table=API_KEYS_TABLE)
        kms = boto3.client("kms")
        monkeypatch.setenv("KMS_KEY_ID", kms.create_key()["KeyMetadata"]["KeyId"])
        mac_key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
        monkeypatch.setenv("REQUEST_MAC_KEY_ID", mac_key)
        logs = boto3.client("logs")
        logs.create_log_group(logGroupName=LOG_GROUP)
        keys = ApiKeyStore(API_KEYS_TABLE)
        yield ApiWorld(
            alice=ApiClient(keys.create("alice").key),
            bob=ApiClient(keys.create("bob").key),
            anonymous=ApiClient(None),
            store=JobStore(JOBS_TABLE),
            keys=keys,
            dynamodb=dynamodb,
            logs=logs,
        )
        resources.cache_clear()
        aws.reset_clients()
