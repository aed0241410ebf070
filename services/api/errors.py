"""The API's refusals: an HTTP status, a message for the client and a reason for metrics."""

from __future__ import annotations

from http import HTTPStatus

JOB_NOT_FOUND = "Job not found"


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def job_not_found() -> ApiError:
    return ApiError(HTTPStatus.NOT_FOUND, JOB_NOT_FOUND, reason="not_found")


def unauthorized() -> ApiError:
    return ApiError(HTTPStatus.UNAUTHORIZED, "Unauthorized", reason="unauthorized")


def bad_request(message: str, *, reason: str = "validation") -> ApiError:
    return ApiError(HTTPStatus.BAD_REQUEST, message, reason=reason)
