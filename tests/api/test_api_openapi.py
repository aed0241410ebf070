"""docs/openapi.json is what the event handler generates, and it documents every route."""

from __future__ import annotations

import json

from build_tools.openapi import DOCUMENT, document


def test_committed_document_is_current() -> None:
    assert DOCUMENT.read_text() == document(), "run: python -m build_tools.openapi"


def test_document_lists_the_routes_and_the_key() -> None:
    spec = json.loads(document())
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/jobs/{job_id}/logs", "/health"} <= set(
        spec["paths"]
    )
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
    }
    assert spec["paths"]["/jobs"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in spec["paths"]["/health"]["get"]
    assert "JobSpec" in spec["components"]["schemas"]
