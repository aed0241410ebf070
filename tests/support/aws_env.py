"""A fake AWS environment: obviously fake credentials, one region, and no endpoint or
profile of the machine's own that could send a test's calls anywhere else."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from jobs import aws

if TYPE_CHECKING:  # the benches import the constants without pytest
    import pytest

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
FAKE_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
# Variables that would point boto3 at real AWS or another endpoint than the test's.
MACHINE_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_ENDPOINT_URL_KMS",
    "AWS_PROFILE",
)


def use_fake_aws(patch: pytest.MonkeyPatch, **variables: str) -> None:
    """Set the fake environment (plus `variables`) on `patch`, and forget cached clients."""
    for name in MACHINE_VARIABLES:
        patch.delenv(name, raising=False)
    for name, value in {**FAKE_AWS_ENVIRONMENT, **variables}.items():
        patch.setenv(name, value)
    aws.reset_clients()


@contextmanager
def moto_in_process(patch: pytest.MonkeyPatch, **variables: str) -> Iterator[None]:
    """moto in this process under the fake environment; clients made inside talk to it."""
    from moto import mock_aws

    use_fake_aws(patch, **variables)
    with mock_aws():
        aws.reset_clients()
        try:
            yield
        finally:
            aws.reset_clients()
