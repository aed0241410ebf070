"""The API Lambda (API Gateway HTTP API, payload 2.0): routes over the logic modules.

Cold start matters here (every first request pays it), so the X-Ray SDK, which costs
more to import than boto3 itself, is loaded only when tracing is on (see `_resolver`).
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from jobs.redact import redact
from jobs.spec import JobSpec
from jobs.states import JobStatus
from services.api import cancel, queries, submit
from services.api.errors import ApiError, unauthorized
from services.api.request_checks import body_rejection, validation_message
from services.api.resources import resources
from services.api.views import job_view, submit_view

logger = Logger()
app = APIGatewayHttpResolver(enable_validation=True)

API_TITLE = "Remote replication service"
API_VERSION = "1.1"
API_KEY_HEADER = "x-api-key"
PUBLIC_PATHS = ("/health", "/openapi.json")
API_KEY_SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}]
JsonResponse = Response[dict[str, Any]]
JobId = Annotated[str, Path(description="The job's id (a UUID)")]


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JsonResponse:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers
    )


def _error_response(error: ApiError) -> JsonResponse:
    with single_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="reason", value=error.reason)
    return _json_response(error.status, {"error": error.message})


def _owner() -> str:
    """The owner of the request's API key (header name in any case), or 401."""
    owner = resources().api_keys.owner_of(app.current_event.headers.get(API_KEY_HEADER))
    if owner is None:
        raise unauthorized()
    return owner


def authenticated(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> JsonResponse:
    app.append_context(owner=_owner())
    return next_middleware(app)


# -- routes ---------------------------------------------------------------------------


@app.post(
    "/jobs", middlewares=[authenticated], security=API_KEY_SECURITY, summary="Submit a job", tags=["jobs"]
)
def post_job(
    spec: Annotated[JobSpec, Body(description="The job spec; schema_version defaults to 1.0")],
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="A retry with the same key returns the same job"),
    ] = None,
) -> JsonResponse:
    submission = submit.submit_job(resources(), app.context["owner"], spec, idempotency_key)
    job = submission.job
    logger.append_keys(job_id=job.job_id, trace_id=job.trace_id)
    if submission.created:
        logger.info("job submitted", extra={"command": job.command, "schema_version": job.schema_version})
        with single_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1) as metric:
            metric.add_dimension(name="command", value=job.command)
    else:
        logger.info("idempotent retry answered with the existing job")
    # A retry gets the very answer of the first request (the deployed CLI expects 201).
    return _json_response(
        HTTPStatus.CREATED,
        submit_view(job),
        headers={"Idempotent-Replayed": "false" if submission.created else "true"},
    )


@app.get(
    "/jobs",
    middlewares=[authenticated],
    security=API_KEY_SECURITY,
    summary="List the caller's jobs, newest first",
    tags=["jobs"],
)
def get_jobs(
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIST_LIMIT)] = queries.DEFAULT_LIST_LIMIT,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    next_token: Annotated[str | None, Query(max_length=2048, description="From the previous page")] = None,
) -> JsonResponse:
    listing = queries.list_jobs(
        resources(), app.context["owner"], limit=limit, status=status, next_token=next_token
    )
    return _json_response(
        HTTPStatus.OK, {"jobs": [job_view(job) for job in listing.jobs], "next_token": listing.next_token}
    )


@app.get(
    "/jobs/<job_id>",
    middlewares=[authenticated],
    security=API_KEY_SECURITY,
    summary="A job's status and progress",
    tags=["jobs"],
)
def get_job(job_id: JobId) -> JsonResponse:
    res = resources()
    job = queries.owned_job(res, app.context["owner"], job_id)
    logger.append_keys(job_id=job.job_id, trace_id=job.trace_id)
    return _json_response(HTTPStatus.OK, job_view(job, logs=queries.failure_logs(res, job)))


@app.post(
    "/jobs/<job_id>/cancel",
    middlewares=[authenticated],
    security=API_KEY_SECURITY,
    summary="Cancel a job",
    tags=["jobs"],
)
def post_cancel(job_id: JobId) -> JsonResponse:
    job = cancel.cancel_job(resources(), app.context["owner"], job_id)
    logger.append_keys(job_id=job.job_id, trace_id=job.trace_id)
    logger.info("cancel requested", extra={"status": job.status.value})
    return _json_response(HTTPStatus.ACCEPTED, job_view(job))


@app.get(
    "/jobs/<job_id>/logs",
    middlewares=[authenticated],
    security=API_KEY_SECURITY,
    summary="A job's worker log lines",
    tags=["jobs"],
)
def get_logs(
    job_id: JobId,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LOG_LINES)] = queries.DEFAULT_LOG_LINES,
) -> JsonResponse:
    res = resources()
    job = queries.owned_job(res, app.context["owner"], job_id)
    logger.append_keys(job_id=job.job_id, trace_id=job.trace_id)
    return _json_response(HTTPStatus.OK, {"job_id": job.job_id, "logs": queries.log_lines(res, job, limit)})


@app.get("/health", summary="Liveness, without a key", tags=["service"])
def get_health() -> JsonResponse:
    return _json_response(HTTPStatus.OK, {"status": "ok"})


@app.get("/openapi.json", include_in_schema=False)
def get_openapi() -> Response[str]:
    return Response(
        status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON, body=openapi_json()
    )


@cache
def openapi_json() -> str:
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

    return app.get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description="Submit PostgreSQL replication jobs and follow them. Send the API key in x-api-key.",
        security_schemes={"apiKey": APIKey(name=API_KEY_HEADER, in_=APIKeyIn.header)},
    )


# -- errors -----------------------------------------------------------------------------


@app.exception_handler(ApiError)
def handle_api_error(error: ApiError) -> JsonResponse:
    return _error_response(error)


@app.exception_handler([RequestValidationError, RequestUnsupportedContentType])
def handle_invalid_request(error: RequestValidationError | RequestUnsupportedContentType) -> JsonResponse:
    # The event handler validates before any middleware runs: answer 401 before 400 on
    # protected routes, so that an unauthenticated caller learns nothing about the input.
    if app.current_event.path not in PUBLIC_PATHS:
        try:
            _owner()
        except ApiError as auth_error:
            return _error_response(auth_error)
    return _error_response(
        ApiError(HTTPStatus.BAD_REQUEST, validation_message(error.errors()), reason="validation")
    )


@app.not_found
def handle_not_found(_: Exception) -> JsonResponse:
    return _json_response(HTTPStatus.NOT_FOUND, {"error": "Not found"})


@app.exception_handler(Exception)
def handle_internal_error(error: Exception) -> JsonResponse:
    # Not logger.exception: the request carries database URLs, and an exception may quote one.
    logger.error(
        "internal error",
        extra={
            "request_id": app.current_event.request_context.request_id,
            "traceback": redact(traceback.format_exc()),
        },
    )
    return _json_response(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "Internal server error"})


# -- entry point -----------------------------------------------------------------------


@cache
def _resolver() -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    # Powertools' Tracer imports the X-Ray SDK even when tracing is off; import it only
    # when it will trace (in Lambda, and not disabled with POWERTOOLS_TRACE_DISABLED).
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() in ("1", "true", "yes", "on")
    if disabled or "LAMBDA_TASK_ROOT" not in os.environ:
        return app.resolve
    from aws_lambda_powertools import Tracer

    return Tracer().capture_lambda_handler(app.resolve)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rejection = body_rejection(event)
    if rejection is not None:
        response = _error_response(rejection)
        return {
            "statusCode": response.status_code,
            "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": json.dumps(response.body, separators=(",", ":")),
            "isBase64Encoded": False,
        }
    return _resolver()(event, context)
