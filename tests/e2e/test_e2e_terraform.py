"""The local cloud provisioned by `terraform apply` of the real module: a job runs through
the API on what Terraform created, the fast provisioning creates the same objects, and
Ctrl-C destroys everything Terraform made."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local_cloud.moto_server import MotoServer
from local_cloud.postgres import LocalPostgres
from local_cloud.provision import local_network, provision_fast
from local_cloud.sample_data import row_counts, table_checksums
from local_cloud.stack import CLIENTS, StackOptions, module_variables
from local_cloud.terraform import unavailable_reason
from local_cloud.wiring import LIVE_ALIAS, read_wiring
from tests.support.e2e import ROOT, SEREN_REMOTE, RunningStack, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]
PROJECT = "seren-local"
# Apply takes under a minute on a quiet machine; a loaded one takes longer.
APPLY_TIMEOUT = 300


@pytest.fixture(scope="module")
def terraform_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    state_dir = tmp_path_factory.mktemp("terraform-stack") / "state"
    console = (state_dir.parent / "console.log").open("wb")
    argv = [SEREN_REMOTE, "local", "up", "--terraform", "--port", "0", "--state-dir", str(state_dir)]
    process = subprocess.Popen(
        argv, cwd=ROOT, stdout=console, stderr=subprocess.STDOUT, env=os.environ.copy()
    )
    stack_file = state_dir / "stack.json"
    try:
        wait_for(lambda: stack_file.exists() or process.poll() is not None, APPLY_TIMEOUT, "stack.json")
    except AssertionError:
        process.kill()
        raise
    if process.poll() is not None:
        raise AssertionError(f"local up --terraform exited with {process.returncode}; see {console.name}")
    stack = RunningStack(process=process, state_dir=state_dir, info=json.loads(stack_file.read_text()))
    yield stack
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=APPLY_TIMEOUT) == 0
    state = json.loads((state_dir / "terraform" / "terraform.tfstate").read_text())
    assert state["resources"] == [], "terraform destroy left resources in the state"
    assert not Path(f"/proc/{stack.info['moto_pid']}").exists()


def test_an_init_job_completes_on_the_terraform_stack(
    terraform_stack: RunningStack, source: LocalPostgres, target: LocalPostgres
) -> None:
    assert terraform_stack.info["provisioned_by"] == "terraform"
    job_id = terraform_stack.submit("init", source.url(), target.url())
    job, seen = terraform_stack.follow(job_id, timeout=120)
    assert "running" in seen
    assert job["status"] == "completed", job
    assert row_counts(target.url()) == row_counts(source.url())
    assert table_checksums(target.url()) == table_checksums(source.url())


# Ids, ARNs' unique parts and timestamps differ between two deployments; names and settings must not.
_VARYING = [
    (re.compile(r"\b(lt|subnet|vpc|ami|sg)-[0-9a-f]{8,17}\b"), r"\1-*"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "*uuid*"),
    (re.compile(r"/stream/[0-9T:.-]+"), "/stream/*"),
    (re.compile(r"\bAROA[A-Z0-9]{4,128}\b"), "AROA*"),  # a role's unique id (WORKER_ROLE_ID)
]


def describe(clients: dict[str, Any], project: str) -> dict[str, Any]:
    """The objects the service runs on, as the AWS APIs describe them, ids masked."""
    lambda_client = clients["lambda"]
    wiring = read_wiring(clients, project_name=project)
    functions = {}
    for config in wiring.functions.values():
        described = lambda_client.get_function_configuration(FunctionName=config.name, Qualifier=LIVE_ALIAS)
        functions[config.name] = {
            **{k: described.get(k) for k in ("Handler", "Runtime", "MemorySize", "Timeout", "Description")},
            "Architectures": described.get("Architectures"),
            "TracingConfig": described.get("TracingConfig"),
            "Environment": described["Environment"]["Variables"],
            "Role": described["Role"].rsplit("/", 1)[1],
            "ReservedConcurrency": lambda_client.get_function_concurrency(FunctionName=config.name).get(
                "ReservedConcurrentExecutions"
            ),
        }
    invoke_config = lambda_client.get_function_event_invoke_config(
        FunctionName=wiring.schedule.function.name, Qualifier=LIVE_ALIAS
    )
    targets = clients["events"].list_targets_by_rule(Rule=wiring.schedule.rule_name)["Targets"]
    rule = clients["events"].describe_rule(Name=wiring.schedule.rule_name)
    description = {
        "functions": functions,
        "api": {
            "route_keys": wiring.api.route_keys,
            "function": (wiring.api.function.name, wiring.api.function.qualifier),
            "payload_format_version": wiring.api.payload_format_version,
            "timeout_seconds": wiring.api.timeout_seconds,
        },
        "stream": {
            **{k: v for k, v in vars(wiring.stream).items() if k != "function"},
            "function": wiring.stream.function.name,
        },
        "schedule": {
            "expression": rule["ScheduleExpression"],
            "target": [(t["Arn"], t.get("RetryPolicy")) for t in targets],
            "invoke_config": {
                k: invoke_config.get(k) for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds")
            },
        },
        "launch_template": wiring.launch_template,
    }
    text = json.dumps(_sorted_tags(description), sort_keys=True, default=str)
    for pattern, replacement in _VARYING:
        text = pattern.sub(replacement, text)
    return dict(json.loads(text))


def _sorted_tags(value: Any) -> Any:
    """Tag lists in key order: the provider sends a map's tags in no fixed order."""
    if isinstance(value, dict):
        return {
            k: sorted(v, key=lambda t: t["Key"]) if k == "Tags" else _sorted_tags(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_sorted_tags(v) for v in value]
    return value


def _clients(endpoint: str, region: str) -> dict[str, Any]:
    session = boto3.session.Session(
        region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return {name: session.client(name, endpoint_url=endpoint) for name in CLIENTS}  # type: ignore[call-overload]


def test_the_fast_provisioning_creates_what_terraform_creates(
    terraform_stack: RunningStack, tmp_path: Path
) -> None:
    region = terraform_stack.info["region"]
    by_terraform = describe(_clients(terraform_stack.info["aws_endpoint_url"], region), PROJECT)
    moto = MotoServer(tmp_path / "moto.log").start()
    try:
        clients = _clients(moto.url, region)
        provision_fast(clients, module_variables(StackOptions.for_terraform(), local_network(clients["ec2"])))
        by_api = describe(clients, PROJECT)
    finally:
        moto.stop()
    for part in by_terraform:
        assert by_api[part] == by_terraform[part], (
            f"{part}: local_cloud/provision.py no longer creates what terraform/ does"
        )
