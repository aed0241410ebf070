"""The API reads exactly the documented variables (Terraform sets these and no others)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobs.rate_limit import RateLimit
from services.api.settings import Settings, environment_variables

REQUIRED = {
    "JOBS_TABLE_NAME": "jobs",
    "API_KEYS_TABLE_NAME": "keys",
    "KMS_KEY_ID": "alias/jobs",
    "REQUEST_MAC_KEY_ID": "alias/request-mac",
    "WORKER_LOG_GROUP": "/workers",
}


def test_exactly_the_documented_variables() -> None:
    assert environment_variables() == {
        "JOBS_TABLE_NAME",
        "API_KEYS_TABLE_NAME",
        "KMS_KEY_ID",
        "REQUEST_MAC_KEY_ID",
        "JOB_RETENTION_DAYS",
        "MAX_UNFINISHED_JOBS_PER_OWNER",
        "MAX_JOB_RUNTIME_SECONDS",
        "MAX_ESTIMATED_SIZE_BYTES",
        "API_KEY_RATE_PER_SECOND",
        "API_KEY_BURST",
        "ALLOWED_TARGET_SUFFIXES",
        "ALLOW_LOOPBACK_HOSTS",
        "ALLOW_PRIVATE_HOSTS",
        "WORKER_LOG_GROUP",
    }


def test_defaults_and_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in environment_variables():
        monkeypatch.delenv(name, raising=False)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ALLOWED_TARGET_SUFFIXES", " serendb.com, .example.net ,")
    monkeypatch.setenv("ALLOW_LOOPBACK_HOSTS", "true")
    settings = Settings.from_environment()
    assert settings.job_retention_days == 30 and settings.max_unfinished_jobs_per_owner == 20
    assert settings.api_key_rate_limit == RateLimit(per_second=5, burst=20)
    assert settings.target_suffixes == ("serendb.com", ".example.net")
    policy = settings.connection_policy
    assert policy.allow_loopback and not policy.allow_private


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JOB_RETENTION_DAYS", "0"),
        ("MAX_UNFINISHED_JOBS_PER_OWNER", "many"),
        ("ALLOW_PRIVATE_HOSTS", "perhaps"),
    ],
)
def test_bad_values_are_refused_at_cold_start(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    for required, required_value in REQUIRED.items():
        monkeypatch.setenv(required, required_value)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings.from_environment()


def test_required_variables_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in environment_variables():
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError):
        Settings.from_environment()
