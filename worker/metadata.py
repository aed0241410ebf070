"""IMDSv2: the instance's own id and ARN, and a Spot interruption notice. A session token
first (PUT), then the read (GET).

The endpoint is AWS_EC2_METADATA_SERVICE_ENDPOINT when set (the local cloud serves one per
instance), as for the AWS SDKs; otherwise the link-local address of the real service.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

from jobs import crypto

DEFAULT_ENDPOINT = "http://169.254.169.254"
ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
TOKEN_TTL_SECONDS = 300


class MetadataUnavailable(RuntimeError):
    pass


def endpoint() -> str:
    return (os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")


def _request(url: str, headers: dict[str, str], timeout: float, method: str = "GET") -> str:
    if not url.startswith(("http://", "https://")):
        raise MetadataUnavailable(f"{ENDPOINT_ENV} must be an http(s) URL")
    request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310 - scheme checked
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - scheme checked
        return str(answer.read().decode())


def _token(base: str, timeout: float) -> str:
    return _request(
        f"{base}/latest/api/token",
        {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)},
        timeout,
        method="PUT",
    )


def instance_id(**retry: float) -> str:
    """This instance's id, retried: IMDS can be slow for a moment right after boot."""
    return _read("/latest/meta-data/instance-id", **retry)


def instance_arn(**retry: float) -> str:
    """This instance's ARN, as AWS puts it in ec2:SourceInstanceARN (from the identity document)."""
    document = json.loads(_read("/latest/dynamic/instance-identity/document", **retry))
    return crypto.instance_arn(document["region"], document["accountId"], document["instanceId"])


def _read(path: str, *, attempts: float = 5, timeout: float = 2.0, backoff: float = 0.5) -> str:
    base = endpoint()
    last_error: Exception | None = None
    for attempt in range(int(attempts)):
        try:
            token = _token(base, timeout)
            value = _request(f"{base}{path}", {"X-aws-ec2-metadata-token": token}, timeout).strip()
            if value:
                return value
            last_error = MetadataUnavailable(f"empty answer for {path}")
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    raise MetadataUnavailable(f"instance metadata service at {base} did not answer: {last_error}")


def spot_interruption(*, timeout: float = 2.0) -> str | None:
    """The Spot interruption notice's action and time ("terminate at 2026-...Z"), or None
    when there is none (404), the instance is not Spot, or IMDS does not answer now."""
    base = endpoint()
    try:
        token = _token(base, timeout)
        path = f"{base}/latest/meta-data/spot/instance-action"
        notice = json.loads(_request(path, {"X-aws-ec2-metadata-token": token}, timeout))
    except (urllib.error.URLError, OSError, ValueError, MetadataUnavailable):
        return None  # 404 (no notice) is an HTTPError, a URLError
    if not isinstance(notice, dict):
        return None
    return f"{notice.get('action', 'terminate')} at {notice.get('time', 'an unknown time')}"
