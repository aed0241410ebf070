"""The client CLI and the seed's curl commands against a running local stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from local_cloud.postgres import LocalPostgres
from local_cloud.sample_data import SAMPLE_DATABASE
from tests.support.e2e import PASSWORD, SEREN_REMOTE, RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]


def cli(stack: RunningStack, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEREN_REMOTE_API": stack.url, "SEREN_API_KEY": stack.key}
    return subprocess.run(
        [SEREN_REMOTE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_submit_watch_exit_codes_and_json(
    stack: RunningStack, source: LocalPostgres, target: LocalPostgres
) -> None:
    ok = cli(
        stack,
        "submit",
        "init",
        "--source",
        source.url(),
        "--target",
        target.url(),
        "--include-databases",
        SAMPLE_DATABASE,
        "--watch",
        "--interval",
        "0.3",
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "completed" in ok.stdout
    assert PASSWORD not in ok.stdout + ok.stderr

    failing = cli(
        stack,
        "submit",
        "init",
        "--source",
        source.url(),
        "--target",
        target.url(),
        "--include-databases",
        "no_such_db",
        "--watch",
        "--interval",
        "0.3",
    )
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "failed" in failing.stdout
    assert PASSWORD not in failing.stdout + failing.stderr

    submitted = cli(
        stack,
        "submit",
        "verify",
        "--source",
        source.url(),
        "--target",
        target.url(),
        "--include-databases",
        SAMPLE_DATABASE,
        "--json",
        "--idempotency-key",
        "cli-e2e-1",
    )
    job_id = json.loads(submitted.stdout)["job_id"]
    again = cli(
        stack,
        "submit",
        "verify",
        "--source",
        source.url(),
        "--target",
        target.url(),
        "--include-databases",
        SAMPLE_DATABASE,
        "--json",
        "--idempotency-key",
        "cli-e2e-1",
    )
    assert json.loads(again.stdout)["job_id"] == job_id  # a retried submit makes no second job
    assert cli(stack, "watch", job_id, "--interval", "0.3").returncode == 0
    status = json.loads(cli(stack, "status", job_id, "--json").stdout)
    assert status["status"] == "completed"
    listing = json.loads(cli(stack, "list", "--json", "--status", "completed").stdout)
    assert job_id in [job["job_id"] for job in listing["jobs"]]
    logs = cli(stack, "logs", job_id)
    assert logs.returncode == 0 and "verify" in logs.stdout


def test_usage_errors_exit_2(stack: RunningStack) -> None:
    assert cli(stack, "submit", "init", "--source", "x").returncode == 2
    assert cli(stack, "frobnicate").returncode == 2
    assert (
        subprocess.run(
            [SEREN_REMOTE, "--api", "ftp://x", "list"], capture_output=True, check=False
        ).returncode
        == 2
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_seed_curl_commands(stack: RunningStack, source: LocalPostgres, target: LocalPostgres) -> None:
    body = json.dumps(
        {
            "command": "init",
            "source_url": source.url(),
            "target_url": target.url(),
            "filter": {},
            "options": {},
        }
    )
    submitted = subprocess.run(
        [
            "curl",
            "-sS",
            "-X",
            "POST",
            f"{stack.url}/jobs",
            "-H",
            "Content-Type: application/json",
            "-H",
            f"x-api-key: {stack.key}",
            "-d",
            body,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(submitted.stdout)
    assert answer["status"] == "provisioning"
    job, _ = stack.follow(answer["job_id"], until=("completed", "failed"), timeout=90)
    status = subprocess.run(
        ["curl", "-sS", f"{stack.url}/jobs/{answer['job_id']}", "-H", f"x-api-key: {stack.key}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(status.stdout)["status"] == job["status"] == "completed"
    unauthorised = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{stack.url}/jobs/{answer['job_id']}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert unauthorised.stdout == "401"
