"""The module checked by Terraform itself, with the real provider from the local mirror:
init (no backend, the committed lock file read-only), validate, fmt, and plans against a
moto server that variable checks and preconditions refuse."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local_cloud.moto_server import MotoServer
from local_cloud.provision import local_network, write_placeholder_package
from local_cloud.stack import StackOptions, aws_environment, module_variables
from local_cloud.terraform import (
    MODULE_DIR,
    Terraform,
    TerraformError,
    find_terraform,
    unavailable_reason,
)

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    terraform = Terraform(work_dir=tmp_path_factory.mktemp("terraform"), environment={})
    terraform.init(backend=False)
    return terraform


def test_the_lock_file_pins_the_provider_version_we_test_with() -> None:
    lock = (MODULE_DIR / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/hashicorp/aws"' in lock
    assert 'version     = "5.100.0"' in lock


def test_the_module_validates_with_the_real_provider(initialised: Terraform) -> None:
    initialised.validate()
    assert not (MODULE_DIR / ".terraform").exists(), "Terraform's data belongs outside the module"


def test_the_module_is_formatted() -> None:
    terraform = find_terraform()
    assert terraform is not None
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(MODULE_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_git_ignores_terraform_data_state_and_variables() -> None:
    ignored = (Path(MODULE_DIR).parent / ".gitignore").read_text().split()
    assert {".terraform/", "*.tfstate", "*.tfstate.*", "terraform.tfvars"} <= set(ignored)


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Terraform, dict[str, Any]]]:
    """The module initialised against a moto server, with the local cloud's variables."""
    work = tmp_path_factory.mktemp("plan")
    moto = MotoServer(work / "moto.log").start()
    try:
        terraform = Terraform(work_dir=work / "terraform", environment=aws_environment("us-east-1", moto.url))
        session = boto3.session.Session(
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        network = local_network(session.client("ec2", endpoint_url=moto.url))
        variables = {
            **module_variables(StackOptions.for_terraform(), network),
            "lambda_package_dir": str(write_placeholder_package(work / "package")),
        }
        terraform.init()
        yield terraform, variables
    finally:
        moto.stop()


@pytest.mark.parametrize(
    ("change", "messages"),
    [
        (
            {
                "max_concurrent_jobs": 2.5,
                "reaper_grace_seconds": {"deadline": 0.5},
                "reaper_reserved_concurrency": 0,
            },
            (
                "max_concurrent_jobs must be between 1 and 1000, a whole number",
                "reaper_grace_seconds: whole numbers",
                "reaper_reserved_concurrency must be -1 or at least 1",
            ),
        ),
        ({"heartbeat_interval_seconds": 40, "heartbeat_timeout_seconds": 60}, ("at least twice",)),
    ],
)
def test_variables_that_would_crash_a_function_are_refused_at_plan(
    planned: tuple[Terraform, dict[str, Any]], change: dict[str, Any], messages: tuple[str, ...]
) -> None:
    terraform, variables = planned
    terraform.write_variables({**variables, **change})
    with pytest.raises(TerraformError) as refused:
        terraform.plan()
    for message in messages:
        assert message in " ".join(str(refused.value).split())


def test_the_local_variables_plan_with_an_unreserved_reaper(
    planned: tuple[Terraform, dict[str, Any]],
) -> None:
    terraform, variables = planned
    terraform.write_variables({**variables, "reaper_reserved_concurrency": -1, "lambda_snap_start": True})
    plan = terraform.plan()
    assert "aws_lambda_function_event_invoke_config.reaper will be created" in plan
    assert 'aws_lambda_alias.live["api"] will be created' in plan
    assert re.search(r'apply_on\s*=\s*"PublishedVersions"', plan)
