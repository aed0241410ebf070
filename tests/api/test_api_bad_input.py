"""No input yields a 5xx: malformed bodies, queries and paths all get {"error": ...}."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.api import V1_BODY, ApiWorld, http_event, invoke

BAD_BODIES: list[tuple[str | None, int]] = [
    (None, 400),
    ("", 400),
    ("null", 400),
    ("[]", 400),
    ('"init"', 400),
    ("42", 400),
    ("{", 400),
    ("{}", 400),
    ('{"command": "init"}', 400),
    (json.dumps({**V1_BODY, "command": None}), 400),
    (json.dumps({**V1_BODY, "command": 7}), 400),
    (json.dumps({**V1_BODY, "filter": []}), 400),
    (json.dumps({**V1_BODY, "filter": {"include_databases": "db1"}}), 400),
    (json.dumps({**V1_BODY, "filter": {"include_databases": [1]}}), 400),
    (json.dumps({**V1_BODY, "options": "fast"}), 400),
    (json.dumps({**V1_BODY, "options": {"estimated_size_bytes": 1.5}}), 400),
    (json.dumps({**V1_BODY, "options": {"estimated_size_bytes": 10**30}}), 400),
    (json.dumps({**V1_BODY, "source_url": None}), 400),
    (json.dumps({**V1_BODY, "source_url": ["x"]}), 400),
    (json.dumps({**V1_BODY, "source_url": "postgresql://u:p@h/db\u0000"}), 400),
    (json.dumps({**V1_BODY, "target_url": "postgresql://u:p@[::1/db"}), 400),
    (json.dumps({**V1_BODY, "schema_version": 1.0}), 400),
    ('{"command": "init", "command": "init"', 400),
    ("\ud800", 400),
    ("{" * 5000 + "}" * 5000, 400),
    ("[" * 3000 + "]" * 3000, 400),
    ('{"a": ' + "9" * 4400 + "}", 400),
    (json.dumps([V1_BODY]), 400),
    ("x" * 20000, 413),
]


@pytest.mark.parametrize(("body", "status"), BAD_BODIES)
def test_bad_bodies_are_refused_with_an_error_message(world: ApiWorld, body: str | None, status: int) -> None:
    answer = invoke(http_event("POST", "/jobs", body=body, headers={"x-api-key": world.alice.key or ""}))
    assert answer.status == status, answer.body
    assert isinstance(answer.body, dict) and set(answer.body) == {"error"} and answer.body["error"]


@pytest.mark.parametrize("body", [body for body, _ in BAD_BODIES if body] + [json.dumps(V1_BODY)])
def test_the_key_is_checked_before_the_body_is_read(world: ApiWorld, body: str) -> None:
    for key in ("", "srk_not-a-key"):
        answer = invoke(http_event("POST", "/jobs", body=body, headers={"x-api-key": key}))
        assert answer.status == 401 and answer.body == {"error": "Unauthorized"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"content-type": "text/plain"}, 415),
        ({"content-type": "application/x-www-form-urlencoded"}, 415),
        ({"content-type": "multipart/form-data"}, 415),
        ({"content-type": "application/jsonx"}, 415),
        ({"content-type": "application/json-patch+json"}, 415),
        ({"content-type": ""}, 415),
        ({"Idempotency-Key": "x" * 300}, 400),
    ],
)
def test_bad_headers_are_refused(world: ApiWorld, headers: dict[str, str], status: int) -> None:
    event = http_event(
        "POST", "/jobs", body=json.dumps(V1_BODY), headers={"x-api-key": world.alice.key or "", **headers}
    )
    answer = invoke(event)
    assert answer.status == status and set(answer.body) == {"error"}
    if status == 415:
        assert answer.body["error"] == "Content-Type must be application/json"
    assert world.dynamodb.scan(TableName="test-jobs")["Count"] == 0


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8"])
def test_json_media_type_with_parameters_is_accepted(world: ApiWorld, content_type: str) -> None:
    event = http_event(
        "POST",
        "/jobs",
        body=json.dumps(V1_BODY),
        headers={"x-api-key": world.alice.key or "", "content-type": content_type},
    )
    assert invoke(event).status == 201


def test_undecodable_base64_body_is_400(world: ApiWorld) -> None:
    for body in ("%%%not-base64", "//79"):  # the second decodes to bytes that are not UTF-8
        event = http_event(
            "POST", "/jobs", body=body, headers={"x-api-key": world.alice.key or ""}, base64_body=True
        )
        assert invoke(event).status == 400


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
SPEC_KEYS = st.sampled_from(["schema_version", "command", "source_url", "target_url", "filter", "options"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(SPEC_KEYS, JSON, max_size=3))
def test_no_mutated_body_yields_a_5xx(world: ApiWorld, changes: dict[str, Any]) -> None:
    answer = world.alice.submit({**V1_BODY, **changes})
    assert answer.status < 500, answer.body
    assert answer.status in (201, 400, 429) and isinstance(answer.body, dict)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/jobs", "/jobs/{x}", "/jobs/{x}/cancel", "/jobs/{x}/logs"]),
    segment=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    query=st.dictionaries(
        st.sampled_from(["limit", "status", "next_token"]), st.text(max_size=30), max_size=3
    ),
)
def test_no_path_or_query_yields_a_5xx(
    world: ApiWorld, path: str, segment: str, query: dict[str, str]
) -> None:
    method = "POST" if path.endswith("cancel") else "GET"
    event = http_event(
        method,
        path.replace("{x}", segment.replace("/", "_")),
        headers={"x-api-key": world.alice.key or ""},
        query=query,
    )
    answer = invoke(event)
    assert answer.status < 500 and isinstance(answer.body, dict), answer.body
    assert answer.status == 200 or set(answer.body) == {"error"}
