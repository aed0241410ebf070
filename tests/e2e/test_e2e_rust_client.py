"""The replicator CLI's own requests, byte for byte, against the local stack.

The bodies are what its `JobSpec` (src/remote/models.rs) serializes to with serde_json
(reqwest's `.json()`): compact, fields in struct order, `skip_serializing_if` fields left
out, a set filter with all four keys and the unset ones `null`, and `options` a HashMap
whose key order varies from run to run. The headers are reqwest's: content-type,
x-api-key and accept, no user-agent. Every answer is read by the rules of the Rust
structs (`JobResponse`, `JobStatus`, `ProgressInfo`), and one init is polled the way
`poll_until_complete` polls: at once, then every 5 s, until `completed` or `failed`.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from local_cloud.postgres import LocalPostgres
from local_cloud.sample_data import SAMPLE_DATABASE, row_counts
from tests.support.e2e import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

I32 = (-(1 << 31), (1 << 31) - 1)
USIZE_MAX = (1 << 64) - 1
CLI_STATUSES = {"provisioning", "running", "completed", "failed"}
CLI_POLL_SECONDS = 5.0
# The order `init_remote` inserts the options in, and another: a HashMap keeps neither.
OPTION_ORDERS = (
    ("drop_existing", "enable_sync", "log_level", "estimated_size_bytes", "job_timeout_seconds"),
    ("job_timeout_seconds", "estimated_size_bytes", "log_level", "enable_sync", "drop_existing"),
)


def serde_body(
    *,
    command: str,
    source_url: str,
    target_url: str,
    project: tuple[str, str, list[str], str] | None = None,
    filters: dict[str, list[str]] | None = None,
    log_level: str = "info",
    no_sync: bool = False,
    option_order: tuple[str, ...] = OPTION_ORDERS[0],
) -> bytes:
    """serde_json::to_vec(&JobSpec) for one CLI invocation."""
    spec: dict[str, Any] = {"schema_version": "1.0", "command": command, "source_url": source_url}
    spec["target_url"] = target_url
    if project is not None:
        project_id, branch_id, databases, api_key = project
        spec |= {
            "target_project_id": project_id,
            "target_branch_id": branch_id,
            "target_databases": databases,
            "seren_api_key": api_key,
        }
    if filters:
        spec["filter"] = {
            name: filters.get(name)
            for name in ("include_databases", "exclude_databases", "include_tables", "exclude_tables")
        }
    values: dict[str, Any] = {
        "drop_existing": False,
        "enable_sync": not no_sync,
        "log_level": log_level,
        "estimated_size_bytes": 20_971_520,
        "job_timeout_seconds": 28800,  # `job_timeout as i64`, the --job-timeout default
    }
    spec["options"] = {name: values[name] for name in option_order}
    return json.dumps(spec, separators=(",", ":"), ensure_ascii=False).encode()


def reqwest(stack: RunningStack, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request as reqwest sends it for the CLI (30 s timeout, no retries)."""
    endpoint = urlsplit(stack.url)
    connection = http.client.HTTPConnection(endpoint.hostname or "", endpoint.port, timeout=30)
    headers = {"accept": "*/*", "x-api-key": stack.key}
    if body is not None:
        headers["content-type"] = "application/json"
    connection.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    if body is not None:
        connection.putheader("content-length", str(len(body)))
    connection.endheaders(body)
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    return answer.status, data


def _optional(value: Any, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def parse_job_response(data: bytes) -> dict[str, Any]:
    """What `response.json::<JobResponse>()` accepts."""
    answer = json.loads(data)
    assert isinstance(answer, dict)
    assert isinstance(answer.get("job_id"), str) and isinstance(answer.get("status"), str), answer
    return answer


def parse_job_status(data: bytes) -> dict[str, Any]:
    """What `response.json::<JobStatus>()` accepts, and the four words a CLI knows."""
    answer = json.loads(data)
    assert isinstance(answer, dict)
    assert isinstance(answer.get("job_id"), str) and isinstance(answer.get("status"), str), answer
    for name in ("created_at", "started_at", "completed_at", "error", "stdout", "stderr"):
        assert _optional(answer.get(name), str), name
    logs = answer.get("logs")
    assert logs is None or (isinstance(logs, list) and all(isinstance(line, str) for line in logs))
    exit_code = answer.get("exit_code")
    assert exit_code is None or (
        isinstance(exit_code, int) and not isinstance(exit_code, bool) and I32[0] <= exit_code <= I32[1]
    )
    progress = answer.get("progress")
    if progress is not None:
        assert isinstance(progress, dict)
        for count in ("databases_completed", "databases_total"):  # usize, required
            value = progress.get(count)
            assert isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= USIZE_MAX, count
        assert _optional(progress.get("current_database"), str) and _optional(progress.get("message"), str)
    for stamp in ("created_at", "started_at", "completed_at"):
        if answer.get(stamp) is not None:
            assert answer[stamp].endswith("Z"), stamp
    assert answer["status"] in CLI_STATUSES, answer["status"]
    return answer


def poll_until_complete(
    stack: RunningStack, job_id: str, interval: float, timeout: float
) -> list[dict[str, Any]]:
    """The CLI's loop: GET at once, then after each sleep; any non-2xx ends it."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        status, data = reqwest(stack, "GET", f"/jobs/{job_id}")
        assert 200 <= status < 300, (status, data)
        seen.append(parse_job_status(data))
        if seen[-1]["status"] in ("completed", "failed"):
            return seen
        assert time.monotonic() < deadline, [answer["status"] for answer in seen]
        time.sleep(interval)


def submit(stack: RunningStack, body: bytes) -> str:
    status, data = reqwest(stack, "POST", "/jobs", body)
    assert 200 <= status < 300, (status, data)
    answer = parse_job_response(data)
    assert answer["status"] == "provisioning"
    return str(answer["job_id"])


def cli_bodies(source: str, target: str) -> dict[str, bytes]:
    """One body per CLI path that submits."""
    bodies = {"url mode": serde_body(command="init", source_url=source, target_url=target)}
    for flag, value in {
        "include_databases": ["shop"],
        "exclude_databases": ["blocker"],
        "include_tables": ["shop.sales.orders"],
        "exclude_tables": ["shop.audit.events"],
    }.items():
        bodies[f"--{flag.replace('_', '-')}"] = serde_body(
            command="init", source_url=source, target_url=target, filters={flag: value}
        )
    bodies["project picker"] = serde_body(
        command="init",
        source_url=source,
        target_url=target,
        project=("proj-cli", "br-cli", ["shop"], "seren_cli-test-console-key"),
        filters={"include_databases": ["shop"]},
    )
    for log_filter in ("off", "database_replicator=debug", "info,tokio_postgres=warn"):
        bodies[f"--log {log_filter}"] = serde_body(
            command="init", source_url=source, target_url=target, log_level=log_filter
        )
    bodies["validate"] = serde_body(command="validate", source_url=source, target_url=target)
    bodies["--no-sync, options reordered"] = serde_body(
        command="init", source_url=source, target_url=target, no_sync=True, option_order=OPTION_ORDERS[1]
    )
    return bodies


def test_every_cli_body_is_accepted_and_every_answer_parses(
    stack: RunningStack, source: LocalPostgres, target: LocalPostgres
) -> None:
    for path, body in cli_bodies(source.url(SAMPLE_DATABASE), target.url(SAMPLE_DATABASE)).items():
        job_id = submit(stack, body)
        # Cancelled at once (no worker is paid for): what matters here is the contract.
        assert reqwest(stack, "POST", f"/jobs/{job_id}/cancel")[0] == 202, path
        status, data = reqwest(stack, "GET", f"/jobs/{job_id}")
        assert status == 200, path
        answer = parse_job_status(data)
        assert answer["status"] == "failed" and "cancel" in answer["error"], (path, answer)


@pytest.mark.parametrize("interval", [0.2, CLI_POLL_SECONDS], ids=["fast", "cli-cadence"])
def test_init_polled_as_the_cli_polls_completes(
    stack: RunningStack, source: LocalPostgres, target: LocalPostgres, interval: float
) -> None:
    body = serde_body(
        command="init",
        source_url=source.url(),
        target_url=target.url(),
        filters={"include_databases": [SAMPLE_DATABASE]},
        no_sync=True,
    )
    job_id = submit(stack, body)
    seen = poll_until_complete(stack, job_id, interval, timeout=120)
    assert seen[-1]["status"] == "completed", (seen[-1]["error"], seen[-1].get("logs"))
    assert {answer["status"] for answer in seen} <= CLI_STATUSES
    assert row_counts(target.url()) == row_counts(source.url())
