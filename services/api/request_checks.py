"""Checks on the raw request that come before any parsing, and the wording of the event
handler's validation errors as one client-facing message."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from email.message import Message
from http import HTTPStatus
from typing import Any

from services.api.errors import ApiError, bad_request

MAX_BODY_BYTES = 16 * 1024
MAX_FIELD_NAME_LENGTH = 100
MAX_REPORTED_ERRORS = 3
JSON_MEDIA_TYPE = "application/json"
_LOCATIONS = ("body", "query", "path", "header", "cookie")


def body_rejection(event: dict[str, Any]) -> ApiError | None:
    """Why the body of a route that takes one cannot be read as a job spec: not sent as
    application/json (415), too large (413), not base64, UTF-8 or JSON, or not a JSON
    object (400). None when it is a JSON object."""
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    body = event.get("body")
    if not body:
        return bad_request("Request body is required: a JSON object")
    if _media_type(str(headers.get("content-type") or "")) != JSON_MEDIA_TYPE:
        return ApiError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
            reason="media_type",
        )
    if not isinstance(body, str):
        return bad_request("Request body must be JSON text")
    if event.get("isBase64Encoded"):
        if len(body) > (MAX_BODY_BYTES + 2) * 4 // 3 + 4:
            return _too_large()
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return bad_request("Request body is not valid base64")
    else:
        raw = body.encode("utf-8", errors="surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        return _too_large()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return bad_request("Request body must be UTF-8 JSON")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        # ValueError also covers integers beyond Python's digit limit; RecursionError,
        # nesting deeper than the parser's stack.
        return bad_request("Request body is not valid JSON")
    if not isinstance(value, dict):
        return bad_request("Request body must be a JSON object")
    return None


def _media_type(content_type: str) -> str:
    """The media type without its parameters ("application/json; charset=utf-8")."""
    message = Message()
    message["content-type"] = content_type
    return message.get_content_type() if content_type.strip() else ""


def _too_large() -> ApiError:
    return ApiError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        f"Request body is larger than {MAX_BODY_BYTES // 1024} KiB",
        reason="too_large",
    )


def validation_message(errors: Sequence[Any]) -> str:
    """One sentence naming the offending fields. Never repeats the input: it may hold
    credentials."""
    parts: list[str] = []
    for error in list(errors)[:MAX_REPORTED_ERRORS]:
        kind = error.get("type")
        location = [str(part) for part in error.get("loc", ())]
        if kind == "json_invalid":
            return "Request body is not valid JSON"
        if location == ["body"] and kind == "missing":
            return "Request body is required"
        if kind == "unsupported_content_type":
            return "Content-Type must be application/json"
        if location and location[0] in _LOCATIONS:
            field = ".".join(location[1:]) or location[0]
        else:
            field = ".".join(location) or "request"
        field = field[:MAX_FIELD_NAME_LENGTH]
        message = str(error.get("msg") or "is invalid").removeprefix("Value error, ")
        parts.append(message if message.startswith(field) else f"{field}: {message}")
    return "Invalid request: " + "; ".join(parts) if parts else "Invalid request"
