"""The API's refusals: an HTTP status, a message for the client and a reason for metrics."""

from __future__ import annotations

from http import HTTPStatus

JOB_NOT_FOUND = "Job not found"


class ApiError(Exception):
    def __init__(
        self, status: HTTPStatus, message: str, *, reason: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = headers


def job_not_found() -> ApiError:
    return ApiError(HTTPStatus.NOT_FOUND, JOB_NOT_FOUND, reason="not_found")


def unauthorized() -> ApiError:
    return ApiError(HTTPStatus.UNAUTHORIZED, "Unauthorized", reason="unauthorized")


def bad_request(message: str, *, reason: str = "validation") -> ApiError:
    return ApiError(HTTPStatus.BAD_REQUEST, message, reason=reason)


def rate_limited(retry_after_seconds: int) -> ApiError:
    return ApiError(
        HTTPStatus.TOO_MANY_REQUESTS,
        f"Request rate limit of this API key reached; retry in {retry_after_seconds} s",
        reason="rate_limited",
        headers={"Retry-After": str(retry_after_seconds)},
    )
