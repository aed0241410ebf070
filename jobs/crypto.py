"""Data access for KMS: a job's connection URLs (and a SerenDB console key, when the target is
a SerenDB project), encrypted under a context bound to the job, and the keyed fingerprint of
a request.

The API encrypts, only the worker decrypts; a ciphertext moved to another job's item does
not decrypt, because the context names the job. A request's fingerprint is an HMAC under a
KMS key only the API may use: an unkeyed hash of a request that holds the URLs would let
anyone who reads the item guess the password offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from jobs import aws

# KMS encrypts at most 4096 bytes in one call.
MAX_PLAINTEXT_BYTES = 4096
CONTEXT_PURPOSE = "replication-job-credentials"


class CredentialsTooLong(ValueError):
    pass


@dataclass(frozen=True)
class Credentials:
    source_url: str = field(repr=False)
    target_url: str = field(repr=False)
    seren_api_key: str | None = field(default=None, repr=False)


def encryption_context(job_id: str, instance_arn: str | None = None) -> dict[str, str]:
    """The API's context names the job; the launcher re-encrypts under one that also names
    the instance it started, and only that instance may decrypt it (the key policy compares
    `instance_arn` with the caller's ec2:SourceInstanceARN)."""
    context = {"job_id": job_id, "purpose": CONTEXT_PURPOSE}
    if instance_arn is not None:
        context["instance_arn"] = instance_arn
    return context


def instance_arn(region: str, account: str, instance_id: str) -> str:
    """An instance's ARN, as AWS puts it in ec2:SourceInstanceARN."""
    partition = "aws-cn" if region.startswith("cn-") else "aws"
    if region.startswith("us-gov-"):
        partition = "aws-us-gov"
    return f"arn:{partition}:ec2:{region}:{account}:instance/{instance_id}"


def plaintext_for(credentials: Credentials) -> bytes:
    fields = {"source_url": credentials.source_url, "target_url": credentials.target_url}
    if credentials.seren_api_key is not None:
        fields["seren_api_key"] = credentials.seren_api_key
    encoded = json.dumps(fields).encode()
    if len(encoded) > MAX_PLAINTEXT_BYTES:
        raise CredentialsTooLong(
            f"source_url, target_url and seren_api_key, as JSON, must be at most "
            f"{MAX_PLAINTEXT_BYTES} bytes together"
        )
    return encoded


class CredentialCipher:
    def __init__(self, key_id: str | None = None, kms: Any | None = None) -> None:
        self.key_id = key_id
        self._kms = kms if kms is not None else aws.client("kms")

    def encrypt(self, job_id: str, credentials: Credentials) -> bytes:
        answer = self._kms.encrypt(
            KeyId=self._key(),
            Plaintext=plaintext_for(credentials),
            EncryptionContext=encryption_context(job_id),
        )
        return bytes(answer["CiphertextBlob"])

    def bind_to_instance(self, job_id: str, ciphertext: bytes, instance: str) -> bytes:
        """The job's credentials re-encrypted for one instance (ARN), without seeing them."""
        answer = self._kms.re_encrypt(
            CiphertextBlob=ciphertext,
            SourceEncryptionContext=encryption_context(job_id),
            DestinationKeyId=self._key(),
            DestinationEncryptionContext=encryption_context(job_id, instance),
        )
        return bytes(answer["CiphertextBlob"])

    def _key(self) -> str:
        if not self.key_id:
            raise RuntimeError("no KMS key configured")
        return self.key_id

    def decrypt(self, job_id: str, ciphertext: bytes, *, instance: str | None = None) -> Credentials:
        answer = self._kms.decrypt(
            CiphertextBlob=ciphertext, EncryptionContext=encryption_context(job_id, instance)
        )
        data = json.loads(answer["Plaintext"])
        return Credentials(
            source_url=data["source_url"],
            target_url=data["target_url"],
            seren_api_key=data.get("seren_api_key"),
        )


class RequestMac:
    """HMAC-SHA-256 under a KMS HMAC key (GenerateMac): equal requests give equal values, and
    nobody without the key can test a guess against a stored one."""

    ALGORITHM = "HMAC_SHA_256"
    PREFIX = "hmac-sha256:"

    def __init__(self, key_id: str, kms: Any | None = None) -> None:
        self.key_id = key_id
        self._kms = kms if kms is not None else aws.client("kms")

    def fingerprint(self, canonical: bytes) -> str:
        # GenerateMac takes at most 4096 bytes; a request may hold more.
        digest = hashlib.sha256(canonical).digest()
        answer = self._kms.generate_mac(KeyId=self.key_id, Message=digest, MacAlgorithm=self.ALGORITHM)
        return self.PREFIX + base64.b64encode(answer["Mac"]).decode()
