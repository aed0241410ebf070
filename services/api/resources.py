"""The API's AWS data access, built once per cold start from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import boto3

from jobs import aws
from jobs.api_keys import ApiKeyStore
from jobs.crypto import CredentialCipher
from jobs.store import JobStore
from services.api.settings import Settings


@dataclass(frozen=True)
class Resources:
    settings: Settings
    jobs: JobStore
    api_keys: ApiKeyStore
    cipher: CredentialCipher


@cache
def resources() -> Resources:
    settings = Settings.from_environment()  # required fields come from the environment
    # One boto3 session for the tables and KMS: each new session loads botocore's endpoint
    # data and the service model again, about 50 ms of CPU per client on the first request.
    session = boto3.session.Session()
    dynamodb = session.resource("dynamodb", config=aws.RETRY_CONFIG)
    return Resources(
        settings=settings,
        jobs=JobStore(settings.jobs_table_name, dynamodb.Table(settings.jobs_table_name)),
        api_keys=ApiKeyStore(settings.api_keys_table_name, dynamodb.Table(settings.api_keys_table_name)),
        cipher=CredentialCipher(settings.kms_key_id, kms=session.client("kms", config=aws.RETRY_CONFIG)),
    )
