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


def test_every_route_declares_the_answers_it_gives() -> None:
    spec = json.loads(document())
    declared = {
        f"{method.upper()} {path}": set(operation["responses"])
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }
    assert declared == {
        "POST /jobs": {"201", "400", "401", "413", "415", "422", "429", "500"},
        "GET /jobs": {"200", "400", "401", "429", "500"},
        "GET /jobs/{job_id}": {"200", "401", "404", "429", "500"},
        "POST /jobs/{job_id}/cancel": {"202", "401", "404", "409", "429", "500"},
        "GET /jobs/{job_id}/logs": {"200", "400", "401", "404", "429", "500"},
        "GET /health": {"200"},
        "GET /openapi.json": {"200"},
    }
    job = spec["paths"]["/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in job["anyOf"]} == {"JobViewV1", "JobViewV11"}
    v1_status = spec["components"]["schemas"]["JobViewV1"]["properties"]["status"]
    assert v1_status["enum"] == ["provisioning", "running", "completed", "failed"]
    error = spec["paths"]["/jobs"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in error["anyOf"]} == {"ErrorBody", "GatewayError"}


def test_request_constraints_and_examples_are_declared() -> None:
    spec = json.loads(document())
    schemas = spec["components"]["schemas"]
    options = schemas["JobOptions"]["properties"]
    assert options["log_level"]["maxLength"] == 512 and "pattern" in options["log_level"]
    # Powertools' OpenAPI model holds bounds as floats: u64::MAX shows as 2.0**64.
    assert options["job_timeout_seconds"]["maximum"] == float((1 << 64) - 1)
    assert schemas["JobSpec"]["properties"]["command"]["$ref"].endswith("/Command")
    assert schemas["Command"]["enum"] == ["init", "validate", "sync", "status", "verify"]
    include = schemas["JobFilter"]["properties"]["include_databases"]["anyOf"]
    assert include[0]["maxItems"] == 100 and include[1] == {"type": "null"}
    body = spec["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert {"cli_url_mode", "cli_project_mode", "curl"} <= set(body["examples"])
    assert spec["paths"]["/jobs"]["get"]["responses"]["200"]["links"]["NextPage"]["operationId"] == "get_jobs"


def test_the_readme_api_table_is_the_document() -> None:
    readme = (DOCUMENT.parents[1] / "README.md").read_text()
    table = readme.split("| route | answers |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines():
        route, answers = (cell.strip().strip("`") for cell in line.strip("|").split("|"))
        rows[route] = {code.strip() for code in answers.split(",")}
    spec = json.loads(document())
    assert rows == {
        f"{method.upper()} {path}": set(operation["responses"])
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }
