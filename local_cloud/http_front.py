"""The HTTP front: what API Gateway (HTTP API, payload format 2.0) does for the api Lambda.

Each request becomes a 2.0 event (headers lower-cased, duplicate headers and query
parameters joined with commas, cookies split out, binary bodies base64-encoded, the
request context filled in) and the handler's answer becomes the HTTP response.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

logger = logging.getLogger(__name__)

# API Gateway's own limit on request bodies.
MAX_BODY_BYTES = 10 * 1024 * 1024
# API Gateway's own answer, given without calling the function.
NOT_FOUND = b'{"message":"Not Found"}'
TEXT_CONTENT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")
JSON = [("content-type", "application/json")]
ROUTE_PARAMETER = re.compile(r"\{([A-Za-z0-9_]+)\+?\}")


@dataclass(frozen=True)
class Route:
    """One route of the HTTP API: "METHOD /path/{param}" (method ANY matches all)."""

    method: str
    path: str

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method):
            return None
        pattern = (
            "^"
            + ROUTE_PARAMETER.sub(
                lambda m: (
                    f"(?P<{m.group(1)}>.+)" if m.group(0).endswith("+}") else f"(?P<{m.group(1)}>[^/]+)"
                ),
                re.escape(self.path).replace(r"\{", "{").replace(r"\}", "}"),
            )
            + "$"
        )
        found = re.match(pattern, path)
        return None if found is None else {k: unquote(v) for k, v in found.groupdict().items()}


def parse_routes(keys: Sequence[str]) -> list[Route]:
    routes = []
    for key in keys:
        method, _, path = key.partition(" ")
        routes.append(Route(method.upper(), path))
    return routes


Invoke = Callable[[dict[str, Any], str], Any]


def build_event(
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    request_id: str,
    routes: Sequence[Route] = (),
    api_id: str = "local",
) -> dict[str, Any]:
    """The payload 2.0 event for one request. Without matching routes the key is $default."""
    split = urlsplit(target)
    path = split.path or "/"
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[lower] = f"{joined[lower]},{value}" if lower in joined else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    route_key = "$default"
    path_parameters: dict[str, str] | None = None
    for route in routes:
        found = route.match(method, path)
        if found is not None:
            route_key = route.key
            path_parameters = found or None
            break
    now = datetime.now(UTC)
    content_type = joined.get("content-type", "")
    is_text = not body or content_type.startswith(TEXT_CONTENT_TYPES) or "json" in content_type
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": split.query,
        "headers": joined,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": api_id,
            "domainName": joined.get("host", "127.0.0.1"),
            "domainPrefix": joined.get("host", "127.0.0.1").split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": not is_text,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = body.decode("utf-8", errors="replace") if is_text else base64.b64encode(body).decode()
    return event


def response_parts(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of a handler's answer, read as API Gateway reads 2.0 answers."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # Payload 2.0: anything else is a 200 whose body is the JSON of the answer.
        text = result if isinstance(result, str) else json.dumps(result)
        return 200, [("content-type", "application/json")], text.encode()
    headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(v)) for v in values)
    headers.extend(("set-cookie", str(cookie)) for cookie in result.get("cookies") or [])
    raw = result.get("body") or ""
    data = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    return int(result["statusCode"]), headers, data


class HttpFront:
    """A ThreadingHTTPServer on 127.0.0.1 in front of one handler."""

    def __init__(
        self,
        invoke: Invoke,
        *,
        port: int = 0,
        routes: Sequence[Route] = (),
        on_request: Callable[[str], None] | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        self._invoke = invoke
        self._routes = list(routes)
        self._timeout = timeout_seconds
        self._on_request = on_request
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-front", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "local-apigateway"
            # Headers and body leave in two writes: without TCP_NODELAY the second waits
            # for the client's delayed ACK (40 ms) on every keep-alive request.
            disable_nagle_algorithm = True

            def do_request(self) -> None:
                front._serve(self)

            def __getattr__(self, name: str) -> Any:
                # Any method (TRACE, PROPFIND, ...) is served like the others: the HTTP API
                # answers 404 for a method and path it has no route for, never 501.
                if name.startswith("do_"):
                    return self.do_request
                raise AttributeError(name)

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                # A request line or headers the server cannot read: JSON, as API Gateway
                # answers (its phrase only: the server's message may quote the request).
                self.close_connection = True
                self.request_version = self.protocol_version  # never HTTP/0.9's bare body
                front._reply(
                    self,
                    code,
                    JSON,
                    json.dumps({"message": HTTPStatus(code).phrase}).encode(),
                    str(uuid.uuid4()),
                )

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("%s %s", self.address_string(), format % args)

        return Handler

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(
                request,
                413,
                [("content-type", "application/json")],
                b'{"message":"Request Entity Too Large"}',
                request_id,
            )
            request.close_connection = True
            return
        body = request.rfile.read(length) if length else b""
        event = build_event(
            method=request.command,
            target=request.path,
            headers=list(request.headers.items()),
            body=body,
            source_ip=request.client_address[0],
            request_id=request_id,
            routes=self._routes,
        )
        if self._routes and event["routeKey"] == "$default":
            # No $default route is declared: API Gateway answers itself.
            self._reply(request, 404, JSON, NOT_FOUND, request_id)
            return
        status, headers, answer = self._call(event, request_id)
        self._reply(request, status, headers, answer, request_id)
        if self._on_request is not None:
            self._on_request(request.command)
        logger.debug(
            "%s %s -> %s in %.1f ms",
            request.command,
            request.path,
            status,
            (time.perf_counter() - started) * 1000,
        )

    def _call(self, event: dict[str, Any], request_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """The function's answer; as API Gateway: 500 when it failed, 503 when it outlasted
        the integration's timeout (the function itself runs on)."""
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["result"] = response_parts(self._invoke(event, request_id))
            except Exception:  # the handler failed: API Gateway answers 500 and logs nothing more
                outcome["result"] = (500, JSON, b'{"message":"Internal Server Error"}')

        if self._timeout is None:
            call()
        else:
            caller = threading.Thread(target=call, name=f"invoke-{request_id}", daemon=True)
            caller.start()
            caller.join(self._timeout)
        return outcome.get("result") or (503, JSON, b'{"message":"Service Unavailable"}')

    @staticmethod
    def _reply(
        request: BaseHTTPRequestHandler,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        request_id: str,
    ) -> None:
        request.send_response(status)
        names = {name.lower() for name, _ in headers}
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                request.send_header(name, value)
        if "content-type" not in names:
            request.send_header("content-type", "application/json")
        request.send_header("apigw-requestid", request_id)
        request.send_header("content-length", str(len(body)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)
