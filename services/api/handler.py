"""The API Lambda (API Gateway HTTP API, payload 2.0): routes over the logic modules.

Cold start matters here (every first request pays it), so the X-Ray SDK, which costs
more to import than boto3 itself, is loaded only when tracing is on (see `_resolver`).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from functools import cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from jobs import clock
from jobs.observability import service_logger, traced
from jobs.redact import redact
from services.api import routes
from services.api.errors import ApiError, rate_limited, unauthorized
from services.api.request_checks import JSON_MEDIA_TYPE, body_rejection, validation_message
from services.api.resources import resources

logger = service_logger()
# Validation is added below as the last middleware, after the key check and the body
# checks: the resolver's own validation would parse the body before any middleware runs.
app = APIGatewayHttpResolver(enable_validation=False)

API_TITLE = "Remote replication service"
API_VERSION = "1.1"
API_KEY_HEADER = "x-api-key"
JsonResponse = Response[dict[str, Any]]


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JsonResponse:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers
    )


def _error_response(error: ApiError) -> JsonResponse:
    with single_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="reason", value=error.reason)
    return _json_response(error.status, {"error": error.message}, error.headers)


# -- middlewares, in this order on every route ------------------------------------------


def _served_route(app: APIGatewayHttpResolver) -> tuple[str, str]:
    """(method, path as the table writes it) of the matched route (Powertools keeps the
    matched route in the context; its own validation middleware reads it there too)."""
    route = app.context["_route"]
    return route.method, route.path


def require_api_key(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """The owner of the request's API key (header name in any case) into the context, or 401;
    a token from the key's bucket, or 429; before anything reads the request."""
    if _served_route(app)[1] not in routes.PUBLIC_PATHS:
        res = resources()
        holder = res.api_keys.authenticate(app.current_event.headers.get(API_KEY_HEADER))
        if holder is None:
            raise unauthorized()
        retry_after = res.api_keys.spend(holder, res.settings.api_key_rate_limit, clock.now())
        if retry_after is not None:
            raise rate_limited(retry_after)
        app.append_context(owner=holder.owner)
    return next_middleware(app)


def check_body(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """A route that takes a body gets a JSON object sent as application/json, or a 4xx."""
    if _served_route(app) in routes.BODY_ROUTES:
        event = app.current_event.raw_event
        rejection = body_rejection(event)
        if rejection is not None:
            raise rejection
        # Media types are case-insensitive and may carry parameters; the validation
        # middleware compares the header's start case-sensitively.
        headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
        event["headers"] = {**headers, "content-type": JSON_MEDIA_TYPE}
    return next_middleware(app)


app.use(middlewares=[require_api_key, check_body, OpenAPIRequestValidationMiddleware()])
app.include_router(routes.router)


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
    return traced(app.resolve)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _resolver()(event, context)
