"""Every request shape of upstream §1 is accepted unchanged: null filter lists, SerenDB
project fields with their console key (a credential), tracing log filters, managed
PostgreSQL URL parameters and any u64 time limit; refusals name the rule or the limit."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
import pytest

from jobs.crypto import CredentialCipher
from jobs.spec import MAX_JOB_TIMEOUT_SECONDS, U64_MAX
from tests.support.api import SOURCE_URL, TARGET_URL, TEST_PASSWORD, V1_BODY, ApiWorld

CONSOLE_KEY = "seren_console-test-key-0123456789"
NULL_FILTER = {
    "include_databases": None,
    "exclude_databases": None,
    "include_tables": None,
    "exclude_tables": None,
}
PROJECT_BODY: dict[str, Any] = {
    "schema_version": "1.0",
    "command": "init",
    "source_url": SOURCE_URL,
    "target_url": TARGET_URL,
    "target_project_id": "proj-123",
    "target_branch_id": "br-456",
    "target_databases": ["shop", "crm"],
    "seren_api_key": CONSOLE_KEY,
    "filter": {**NULL_FILTER, "include_databases": ["shop", "crm"]},
    "options": {
        "drop_existing": False,
        "enable_sync": True,
        "log_level": "info",
        "estimated_size_bytes": 123456789,
        "job_timeout_seconds": 28800,
    },
}


@pytest.mark.parametrize("flag", list(NULL_FILTER))
def test_one_filter_flag_with_the_other_three_null(world: ApiWorld, flag: str) -> None:
    value = ["shop"] if flag.endswith("databases") else ["shop.orders"]
    answer = world.alice.submit({**V1_BODY, "filter": {**NULL_FILTER, flag: value}})
    assert answer.status == 201, answer.body
    job = world.store.get(answer.body["job_id"])
    assert job is not None and getattr(job.filter, flag) == value
    assert all(getattr(job.filter, other) == [] for other in NULL_FILTER if other != flag)


def test_project_target_is_kept_and_its_key_is_encrypted_with_the_urls(world: ApiWorld) -> None:
    answer = world.alice.submit(PROJECT_BODY)
    assert answer.status == 201, answer.body
    job_id = answer.body["job_id"]
    view = world.alice.get(job_id).body
    assert (view["target_project_id"], view["target_branch_id"], view["target_databases"]) == (
        "proj-123",
        "br-456",
        ["shop", "crm"],
    )
    assert CONSOLE_KEY not in json.dumps(view) and CONSOLE_KEY not in json.dumps(answer.body)
    item = world.dynamodb.get_item(TableName="test-jobs", Key={"job_id": {"S": job_id}})["Item"]
    assert CONSOLE_KEY not in json.dumps(item, default=str) and TEST_PASSWORD not in json.dumps(
        item, default=str
    )
    ciphertext = world.store.get_credentials(job_id)
    assert ciphertext is not None
    credentials = CredentialCipher(os.environ["KMS_KEY_ID"], kms=boto3.client("kms")).decrypt(
        job_id, ciphertext
    )
    assert credentials.seren_api_key == CONSOLE_KEY and credentials.target_url == TARGET_URL


def test_console_key_never_reaches_the_logs(world: ApiWorld, capsys: pytest.CaptureFixture[str]) -> None:
    assert world.alice.submit(PROJECT_BODY).status == 201
    bad = {**PROJECT_BODY, "seren_api_key": CONSOLE_KEY + " with a space"}
    answer = world.alice.submit(bad)
    assert answer.status == 400 and "seren_api_key" in answer.body["error"]
    assert CONSOLE_KEY not in answer.body["error"]
    assert CONSOLE_KEY not in capsys.readouterr().out


@pytest.mark.parametrize(
    "log_filter",
    ["info", "off", "OFF", "database_replicator=debug", "info,tokio_postgres=warn", "a::b=trace,warn", ""],
)
def test_log_level_is_a_tracing_filter(world: ApiWorld, log_filter: str) -> None:
    answer = world.alice.submit({**V1_BODY, "options": {"log_level": log_filter}})
    assert answer.status == 201, answer.body
    job = world.store.get(answer.body["job_id"])
    assert job is not None and job.options.log_level == log_filter


@pytest.mark.parametrize(
    "log_filter", ["lo ud", "info;rm -rf", "db[span{x=1}]=debug", "=info", "x=", "a" * 600]
)
def test_log_filter_outside_the_grammar_is_refused(world: ApiWorld, log_filter: str) -> None:
    answer = world.alice.submit({**V1_BODY, "options": {"log_level": log_filter}})
    assert answer.status == 400 and "options.log_level" in answer.body["error"]


@pytest.mark.parametrize(
    "query",
    [
        "sslmode=require&channel_binding=require",
        "client_encoding=UTF8",
        "keepalives=1&keepalives_idle=30&keepalives_interval=10&keepalives_count=3",
        "application_name=cli&connect_timeout=10&target_session_attrs=read-write",
        "sslmode=verify-full&sslrootcert=system",
    ],
)
def test_managed_postgres_parameters_are_accepted(world: ApiWorld, query: str) -> None:
    answer = world.alice.submit({**V1_BODY, "target_url": f"{TARGET_URL}?{query}"})
    assert answer.status == 201, answer.body


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("sslcert=/etc/passwd", "sslcert is not allowed: it makes libpq read files"),
        ("sslkey=/root/key", "sslkey is not allowed: it makes libpq read files"),
        ("passfile=/root/.pgpass", "passfile is not allowed: it makes libpq read files"),
        ("service=prod", "service is not allowed: it makes libpq read files"),
        ("sslrootcert=/etc/ssl/ca.pem", "sslrootcert may only be 'system'"),
        ("host=10.0.0.1", "host is not allowed: it would override the URL's own part"),
        ("hostaddr=169.254.169.254", "hostaddr is not allowed"),
        ("bogus=1", "not a libpq connection parameter"),
    ],
)
def test_file_reading_and_overriding_parameters_are_refused_by_name(
    world: ApiWorld, query: str, said: str
) -> None:
    answer = world.alice.submit({**V1_BODY, "source_url": f"{SOURCE_URL}?{query}"})
    assert answer.status == 400 and said in answer.body["error"], answer.body
    assert "source_url" in answer.body["error"]


@pytest.mark.parametrize(
    ("asked", "granted"),
    [
        (0, MAX_JOB_TIMEOUT_SECONDS),
        (1, 1),
        (28800, 28800),
        (MAX_JOB_TIMEOUT_SECONDS, MAX_JOB_TIMEOUT_SECONDS),
        (-1, MAX_JOB_TIMEOUT_SECONDS),  # the CLI's `u64::MAX as i64`
    ],
)
def test_time_limits_up_to_the_maximum_are_granted(world: ApiWorld, asked: int, granted: int) -> None:
    answer = world.alice.submit({**V1_BODY, "options": {"job_timeout_seconds": asked}})
    assert answer.status == 201, answer.body
    job = world.store.get(answer.body["job_id"])
    assert job is not None and job.options.job_timeout_seconds == asked
    assert job.options.timeout_seconds == granted


@pytest.mark.parametrize("asked", [MAX_JOB_TIMEOUT_SECONDS + 1, U64_MAX])
def test_a_time_limit_beyond_the_maximum_is_refused_naming_it(world: ApiWorld, asked: int) -> None:
    answer = world.alice.submit({**V1_BODY, "options": {"job_timeout_seconds": asked}})
    assert answer.status == 400, answer.body
    assert f"at most {MAX_JOB_TIMEOUT_SECONDS} seconds" in answer.body["error"]
    assert "options.job_timeout_seconds" in answer.body["error"]


def test_limits_are_named_in_refusals(world: ApiWorld) -> None:
    too_many = world.alice.submit({**V1_BODY, "filter": {"include_databases": [f"d{i}" for i in range(101)]}})
    assert too_many.status == 400 and "100" in too_many.body["error"]
    too_long = world.alice.submit({**V1_BODY, "source_url": SOURCE_URL + "?application_name=" + "a" * 200})
    assert too_long.status == 400 and "128" in too_long.body["error"]
