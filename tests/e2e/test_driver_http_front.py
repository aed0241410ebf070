# ruff: noqa: S310  (loopback URLs of the servers under test)
"""The HTTP front on its own, in front of a fake handler: payload 2.0 events and answers."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from local_cloud.http_front import HttpFront, build_event, parse_routes, response_parts

ROUTES = parse_routes(["POST /jobs", "GET /jobs", "GET /jobs/{job_id}", "POST /jobs/{job_id}/cancel"])


def test_event_carries_request_in_payload_2_0_shape() -> None:
    event = build_event(
        method="GET",
        target="/jobs/abc-1?status=running&status=queued&limit=5",
        headers=[("X-Api-Key", "k1"), ("Accept", "a"), ("Accept", "b"), ("Cookie", "c1=1; c2=2")],
        body=b"",
        source_ip="127.0.0.1",
        request_id="req-1",
        routes=ROUTES,
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /jobs/{job_id}"
    assert event["rawPath"] == "/jobs/abc-1"
    assert event["rawQueryString"] == "status=running&status=queued&limit=5"
    assert event["headers"] == {"x-api-key": "k1", "accept": "a,b"}
    assert event["cookies"] == ["c1=1", "c2=2"]
    assert event["queryStringParameters"] == {"status": "running,queued", "limit": "5"}
    assert event["pathParameters"] == {"job_id": "abc-1"}
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/jobs/abc-1",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "",
    }
    assert context["requestId"] == "req-1"
    assert context["stage"] == "$default"
    assert isinstance(context["timeEpoch"], int)
    assert event["isBase64Encoded"] is False
    assert "body" not in event


def test_unmatched_route_is_default_and_binary_body_is_base64() -> None:
    event = build_event(
        method="PUT",
        target="/other",
        headers=[("Content-Type", "application/octet-stream")],
        body=b"\x00\xff",
        source_ip="127.0.0.1",
        request_id="r",
        routes=ROUTES,
    )
    assert event["routeKey"] == "$default"
    assert "pathParameters" not in event
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x00\xff"


def test_json_body_is_text() -> None:
    event = build_event(
        method="POST",
        target="/jobs",
        headers=[("Content-Type", "application/json")],
        body=b'{"a": 1}',
        source_ip="127.0.0.1",
        request_id="r",
        routes=ROUTES,
    )
    assert event["routeKey"] == "POST /jobs"
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == {"a": 1}


def test_answer_forms() -> None:
    assert response_parts({"statusCode": 201, "headers": {"X-A": "1"}, "body": "{}"}) == (
        201,
        [("X-A", "1")],
        b"{}",
    )
    status, _, body = response_parts(
        {"statusCode": 200, "body": base64.b64encode(b"\x01").decode(), "isBase64Encoded": True}
    )
    assert (status, body) == (200, b"\x01")
    # Payload 2.0: an answer without statusCode is a 200 with the answer as JSON.
    assert response_parts({"ok": True}) == (200, [("content-type", "application/json")], b'{"ok": true}')


@pytest.fixture
def front() -> Iterator[tuple[HttpFront, list[dict[str, Any]]]]:
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], request_id: str) -> dict[str, Any]:
        events.append(event)
        if event["rawPath"] == "/boom":
            raise RuntimeError("handler failed")
        return {
            "statusCode": 202,
            "headers": {
                "Content-Type": "application/json",
                "X-Seen-Key": event["headers"].get("x-api-key", ""),
            },
            "cookies": ["session=1"],
            "body": json.dumps({"path": event["rawPath"], "request_id": request_id}),
        }

    server = HttpFront(handler, port=0, routes=[*ROUTES, *parse_routes(["GET /boom"])])
    server.start()
    yield server, events
    server.stop()


def test_live_request_round_trip(front: tuple[HttpFront, list[dict[str, Any]]]) -> None:
    server, events = front
    request = urllib.request.Request(
        f"{server.url}/jobs/j-9/cancel?x=1",
        data=b'{"why": "test"}',
        method="POST",
        headers={"X-API-KEY": "abc", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 202
        assert answer.headers["X-Seen-Key"] == "abc"
        assert answer.headers["Set-Cookie"] == "session=1"
        body = json.loads(answer.read())
    assert body["path"] == "/jobs/j-9/cancel"
    assert answer.headers["apigw-requestid"] == body["request_id"]
    (event,) = events
    assert event["routeKey"] == "POST /jobs/{job_id}/cancel"
    assert event["pathParameters"] == {"job_id": "j-9"}
    assert json.loads(event["body"]) == {"why": "test"}
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"


def test_handler_exception_is_a_500(front: tuple[HttpFront, list[dict[str, Any]]]) -> None:
    server, _ = front
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(f"{server.url}/boom", timeout=5)
    assert failure.value.code == 500
    assert json.loads(failure.value.read()) == {"message": "Internal Server Error"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nowhere"),
        ("DELETE", "/jobs"),
        ("TRACE", "/jobs"),
        ("PROPFIND", "/jobs/j-1"),
        ("BREW", "/"),
        ("HEAD", "/jobs"),
        ("OPTIONS", "/jobs"),
    ],
)
def test_a_method_and_path_without_a_route_is_a_json_404(
    front: tuple[HttpFront, list[dict[str, Any]]], method: str, path: str
) -> None:
    """As the HTTP API without a $default route: 404 from the gateway, the function not called."""
    server, events = front
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request(method, path)
    answer = connection.getresponse()
    body = answer.read()
    connection.close()
    assert answer.status == 404
    assert answer.headers["content-type"] == "application/json"
    if method != "HEAD":
        assert json.loads(body) == {"message": "Not Found"}
    assert events == []


def test_an_unreadable_request_is_a_json_400(front: tuple[HttpFront, list[dict[str, Any]]]) -> None:
    server, events = front
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"GET /jobs HTTP/1.1 extra\r\n\r\n")
        chunks = []
        while chunk := raw.recv(65536):  # the server closes the connection after its answer
            chunks.append(chunk)
        answer = b"".join(chunks).decode()
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400") and "content-type: application/json" in head.lower()
    assert "message" in json.loads(body)
    assert events == []
