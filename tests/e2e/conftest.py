"""Fixtures of the local-cloud tests: fake AWS credentials for the driver tests (moto in
process), and for the end-to-end tests a whole local stack in a child process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobs import aws


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    aws.reset_clients()
    yield
    aws.reset_clients()
