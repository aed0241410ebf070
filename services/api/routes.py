"""The API's routes as one table, registered on a Powertools router in a loop.

The table is the contract's single source: the event handler serves it, the OpenAPI
document declares it (with each route's real answers), Terraform's route keys are
generated from it (`build_tools.generate`), and the key check's public paths come from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from jobs.record import Job
from jobs.spec import JobSpec
from jobs.states import JobStatus
from services.api import cancel, queries, submit
from services.api.examples import SUBMIT_EXAMPLES
from services.api.resources import Resources, resources
from services.api.schemas import ErrorAnswer, Health, JobPage, JobView, LogLines, SubmitAnswer
from services.api.views import job_view, submit_view

logger = Logger()
router = APIGatewayHttpRouter()

API_KEY_SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}]
JsonResponse = Response[dict[str, Any]]
JobId = Annotated[str, Path(description="The job's id (a UUID); any other value is not found")]

ERROR_DESCRIPTIONS = {
    HTTPStatus.BAD_REQUEST: "The request is invalid; the error names the field and the rule",
    HTTPStatus.UNAUTHORIZED: "Missing or unknown x-api-key",
    HTTPStatus.NOT_FOUND: "Job not found (or not the caller's)",
    HTTPStatus.CONFLICT: "The job has already ended",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "The body is larger than 16 KiB",
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: "The body is not sent as application/json",
    HTTPStatus.UNPROCESSABLE_ENTITY: "Idempotency-Key was already used with a different request",
    HTTPStatus.TOO_MANY_REQUESTS: "The API key's request rate limit is reached (Retry-After says when to "
    "try again); for a submit, also: too many unfinished jobs for this owner",
    HTTPStatus.INTERNAL_SERVER_ERROR: "An internal fault (logged with the request id)",
}


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JsonResponse:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers
    )


def _view(res: Resources, job: Job, *, logs: list[str] | None = None) -> dict[str, Any]:
    settings = res.settings
    return job_view(
        job,
        log_group=settings.worker_log_group,
        max_runtime_seconds=settings.max_job_runtime_seconds,
        logs=logs,
    )


# -- handlers ---------------------------------------------------------------------------


def post_job(
    spec: Annotated[
        JobSpec,
        Body(description="The job spec; schema_version defaults to 1.0", openapi_examples=SUBMIT_EXAMPLES),
    ],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="A retry with the same key returns the same job",
            max_length=submit.MAX_IDEMPOTENCY_KEY_LENGTH,
        ),
    ] = None,
) -> JsonResponse:
    submission = submit.submit_job(resources(), router.context["owner"], spec, idempotency_key)
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


def get_jobs(
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIST_LIMIT)] = queries.DEFAULT_LIST_LIMIT,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    next_token: Annotated[
        str | None, Query(max_length=queries.MAX_TOKEN_LENGTH, description="From the previous page")
    ] = None,
) -> JsonResponse:
    res = resources()
    owner = router.context["owner"]
    listing = queries.list_jobs(res, owner, limit=limit, status=status, next_token=next_token)
    views = [_view(res, job) for job in listing.jobs]
    return _json_response(HTTPStatus.OK, {"jobs": views, "next_token": listing.next_token})


def get_job(job_id: JobId) -> JsonResponse:
    res = resources()
    job = queries.owned_job(res, router.context["owner"], job_id)
    logger.append_keys(job_id=job.job_id, trace_id=job.trace_id)
    view = _view(res, job, logs=queries.failure_logs(res, job))
    return _json_response(HTTPStatus.OK, view)


def post_cancel(job_id: JobId) -> JsonResponse:
    res = resources()
    job = cancel.cancel_job(res, router.context["owner"], job_id)
    logger.append_keys(job_id=job.job_id, trace_id=job.trace_id)
    logger.info("cancel requested", extra={"status": job.status.value})
    return _json_response(HTTPStatus.ACCEPTED, _view(res, job))


def get_logs(
    job_id: JobId,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LOG_LINES)] = queries.DEFAULT_LOG_LINES,
) -> JsonResponse:
    res = resources()
    job = queries.owned_job(res, router.context["owner"], job_id)
    logger.append_keys(job_id=job.job_id, trace_id=job.trace_id)
    return _json_response(HTTPStatus.OK, {"job_id": job.job_id, "logs": queries.log_lines(res, job, limit)})


def get_health() -> JsonResponse:
    return _json_response(HTTPStatus.OK, {"status": "ok"})


def get_openapi() -> Response[str]:
    from services.api.handler import openapi_json  # the document describes the app that serves it

    return Response(
        status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON, body=openapi_json()
    )


# -- the table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str  # Powertools' syntax: /jobs/<job_id>
    handler: Callable[..., Any]
    summary: str
    status: HTTPStatus  # the success answer
    answer: Any  # its body's model
    errors: tuple[HTTPStatus, ...] = ()
    public: bool = False  # served without an API key
    takes_body: bool = False
    # OpenAPI links: where values of the answer are used next (clients and stateful tests).
    links: dict[str, Any] | None = None

    @property
    def gateway_path(self) -> str:
        """API Gateway's syntax: /jobs/{job_id}."""
        return self.path.replace("<", "{").replace(">", "}")

    @property
    def key(self) -> str:
        return f"{self.method} {self.gateway_path}"

    def responses(self) -> dict[int, OpenAPIResponse]:
        success: OpenAPIResponse = {
            "description": self.summary,
            "content": {content_types.APPLICATION_JSON: {"model": self.answer}},
        }
        if self.handler is post_job:
            success["headers"] = {
                "Idempotent-Replayed": {
                    "description": "true when a retry with the same Idempotency-Key got the existing job",
                    "schema": {"type": "string", "enum": ["true", "false"]},
                }
            }
        if self.links:
            success["links"] = self.links
        declared: dict[int, OpenAPIResponse] = {int(self.status): success}
        for status in self.errors:
            declared[int(status)] = {
                "description": ERROR_DESCRIPTIONS[status],
                "content": {content_types.APPLICATION_JSON: {"model": ErrorAnswer}},
            }
            if status is HTTPStatus.TOO_MANY_REQUESTS:
                declared[int(status)]["headers"] = {
                    "Retry-After": {
                        "description": "Seconds until the key may send again (with a rate-limit refusal)",
                        "schema": {"type": "integer", "minimum": 1},
                    }
                }
        return declared


_AUTHENTICATED = (HTTPStatus.UNAUTHORIZED, HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.INTERNAL_SERVER_ERROR)
_JOB_LINKS = (("GetJob", "get_job"), ("CancelJob", "post_cancel"), ("GetLogs", "get_logs"))
_NEXT_PAGE_LINK = {"next_token": "$response.body#/next_token"}
_ONE_JOB = (*_AUTHENTICATED, HTTPStatus.NOT_FOUND)

ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute(
        "POST",
        "/jobs",
        post_job,
        "Submit a job",
        HTTPStatus.CREATED,
        SubmitAnswer,
        (
            HTTPStatus.BAD_REQUEST,
            *_AUTHENTICATED,
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            HTTPStatus.UNPROCESSABLE_ENTITY,
        ),
        takes_body=True,
        links={
            name: {"operationId": operation, "parameters": {"job_id": "$response.body#/job_id"}}
            for name, operation in _JOB_LINKS
        },
    ),
    ApiRoute(
        "GET",
        "/jobs",
        get_jobs,
        "List the caller's jobs, newest first",
        HTTPStatus.OK,
        JobPage,
        (HTTPStatus.BAD_REQUEST, *_AUTHENTICATED),
        links={"NextPage": {"operationId": "get_jobs", "parameters": _NEXT_PAGE_LINK}},
    ),
    ApiRoute(
        "GET", "/jobs/<job_id>", get_job, "A job's status and progress", HTTPStatus.OK, JobView, _ONE_JOB
    ),
    ApiRoute(
        "POST",
        "/jobs/<job_id>/cancel",
        post_cancel,
        "Cancel a job",
        HTTPStatus.ACCEPTED,
        JobView,
        (*_ONE_JOB, HTTPStatus.CONFLICT),
    ),
    ApiRoute(
        "GET",
        "/jobs/<job_id>/logs",
        get_logs,
        "A job's worker log lines",
        HTTPStatus.OK,
        LogLines,
        (HTTPStatus.BAD_REQUEST, *_ONE_JOB),
    ),
    ApiRoute("GET", "/health", get_health, "Liveness, without a key", HTTPStatus.OK, Health, public=True),
    ApiRoute(
        "GET", "/openapi.json", get_openapi, "This document", HTTPStatus.OK, dict[str, Any], public=True
    ),
)
PUBLIC_PATHS = frozenset(route.path for route in ROUTES if route.public)
BODY_ROUTES = frozenset((route.method, route.path) for route in ROUTES if route.takes_body)

for _route in ROUTES:
    router.route(
        _route.path,
        _route.method,
        summary=_route.summary,
        responses=_route.responses(),
        tags=["service" if _route.public else "jobs"],
        operation_id=_route.handler.__name__,
        security=None if _route.public else API_KEY_SECURITY,
        status_code=_route.status,
    )(_route.handler)
