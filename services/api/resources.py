"""The API's AWS data access, built once per cold start from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from jobs.api_keys import ApiKeyStore
from jobs.crypto import CredentialCipher, RequestMac
from jobs.owners import OwnerLedger
from jobs.store import JobStore
from services.api.settings import Settings


@dataclass(frozen=True)
class Resources:
    settings: Settings
    jobs: JobStore
    api_keys: ApiKeyStore
    cipher: CredentialCipher
    request_mac: RequestMac
    owners: OwnerLedger


@cache
def resources() -> Resources:
    settings = Settings.from_environment()  # required fields come from the environment
    return Resources(
        settings=settings,
        jobs=JobStore(settings.jobs_table_name),
        api_keys=ApiKeyStore(settings.api_keys_table_name),
        cipher=CredentialCipher(settings.kms_key_id),
        request_mac=RequestMac(settings.request_mac_key_id),
        owners=OwnerLedger(settings.jobs_table_name),
    )
