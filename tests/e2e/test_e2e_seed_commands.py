"""The seed's deployment document typed as written against the local cloud: its
terraform.tfvars (six variables, no network) plans and applies in the account's default
VPC, its `terraform output` shows its outputs, and its "Updating Lambda Code" command
updates what serves the API while the other functions stay. The module runs from a copy
laid out as the seed's readers have it (`terraform/` beside the packages in `build/`),
so every command runs unchanged in that directory."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from local_cloud.moto_server import MotoServer
from local_cloud.provision import local_network, write_placeholder_package
from local_cloud.stack import aws_environment
from local_cloud.terraform import MODULE_DIR, find_plugin_mirror, unavailable_reason
from local_cloud.wiring import LIVE_ALIAS
from tests.support import seed_document

SEED = seed_document.find_seed_document()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
    pytest.mark.skipif(SEED is None, reason=f"no {seed_document.DOCUMENT} above the checkout"),
    # Each test runs one or two applies of the whole module (a minute or more on a busy machine).
    pytest.mark.timeout(1200),
]
REGION = "us-east-1"
PLACEHOLDER_AMI = "ami-xxxxxxxxx"  # the seed's "Your custom AMI"


@dataclass
class SeedDeployment:
    """The module copied to `<work>/terraform`, its packages in `<work>/build`."""

    directory: Path
    environment: dict[str, str]
    clients: dict[str, Any]
    plan_output: str

    def run(self, command: str, *, answer: str = "yes\n") -> str:
        """One line of the seed, through a shell, answering Terraform's prompt."""
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=self.directory,
            env=self.environment,
            input=answer,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        with (self.directory.parent / "commands.log").open("a") as log:
            log.write(f"$ {command}\n{result.stdout}{result.stderr}\n")
        assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        return result.stdout

    @property
    def package_dir(self) -> Path:
        return self.directory.parent / "build"

    def function(self, name: str) -> dict[str, Any]:
        """A function's code, its versions and what its `live` alias serves."""
        lambda_client = self.clients["lambda"]
        versions = lambda_client.list_versions_by_function(FunctionName=name)["Versions"]
        alias = lambda_client.get_alias(FunctionName=name, Name=LIVE_ALIAS)
        served = lambda_client.get_function_configuration(
            FunctionName=name, Qualifier=alias["FunctionVersion"]
        )
        return {
            "code": lambda_client.get_function_configuration(FunctionName=name)["CodeSha256"],
            "versions": sorted(v["Version"] for v in versions if v["Version"] != "$LATEST"),
            "live_serves": served["CodeSha256"],
        }


def _copy_module(destination: Path) -> None:
    shutil.copytree(
        MODULE_DIR,
        destination,
        ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", "terraform.tfvars", "backend.tf"),
    )


def _cli_configuration(path: Path) -> Path:
    """`terraform init` as written, offline: the provider from the machine's mirror."""
    path.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{find_plugin_mirror()}"\n  }}\n}}\n'
    )
    return path


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedDeployment]:
    assert SEED is not None
    text = SEED.read_text()
    work = tmp_path_factory.mktemp("seed")
    moto = MotoServer(work / "moto.log").start()
    try:
        session = boto3.session.Session(
            region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        clients = {
            name: session.client(name, endpoint_url=moto.url)  # type: ignore[call-overload]
            for name in ("ec2", "lambda")
        }
        _copy_module(work / "terraform")
        write_placeholder_package(work / "build")
        body, values = seed_document.tfvars(text)
        assert len(values) == 6 and values["worker_ami_id"] == PLACEHOLDER_AMI
        image = local_network(clients["ec2"]).image_id
        (work / "terraform" / "terraform.tfvars").write_text(body.replace(PLACEHOLDER_AMI, image))
        environment = {
            **os.environ,
            **aws_environment(REGION, moto.url),
            "TF_CLI_CONFIG_FILE": str(_cli_configuration(work / "terraformrc")),
            "CHECKPOINT_DISABLE": "1",
            # The seed's commands as written, their output without colour codes.
            **{f"TF_CLI_ARGS_{command}": "-no-color" for command in ("plan", "apply", "output", "destroy")},
        }
        seed = SeedDeployment(work / "terraform", environment, clients, plan_output="")
        for heading, expected in [
            ("Initialize Terraform", ["terraform init"]),
            ("Plan Deployment", ["terraform plan"]),
            ("Apply Configuration", ["terraform apply"]),
        ]:
            assert seed_document.commands(seed_document.section(text, heading)) == expected
            (command,) = expected
            output = seed.run(command)
            if command == "terraform plan":
                seed.plan_output = output
        yield seed
        # The module's README's cleanup (the seed's `terraform destroy` alone is refused by
        # the tables' deletion protection).
        seed.run("terraform apply -var table_deletion_protection=false")
        seed.run("terraform destroy -var table_deletion_protection=false")
        assert seed.run("terraform state list", answer="") == ""
    finally:
        moto.stop()


def test_the_seed_tfvars_deploy_the_workers_into_the_default_vpc_and_say_so(
    deployment: SeedDeployment,
) -> None:
    assert "Warning: Check block assertion failed" in deployment.plan_output
    assert "the account's default VPC" in " ".join(deployment.plan_output.split())
    ec2 = deployment.clients["ec2"]
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    default_subnets = sorted(
        s["SubnetId"]
        for s in ec2.describe_subnets(
            Filters=[
                {"Name": "vpc-id", "Values": [default_vpc]},
                {"Name": "default-for-az", "Values": ["true"]},
            ]
        )["Subnets"]
    )
    (group,) = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["seren-replication-worker"]}]
    )["SecurityGroups"]
    assert group["VpcId"] == default_vpc
    launcher = deployment.clients["lambda"].get_function_configuration(
        FunctionName="seren-replication-launcher", Qualifier=LIVE_ALIAS
    )
    assert launcher["Environment"]["Variables"]["SUBNET_IDS"].split(",") == default_subnets


def test_the_seed_outputs_are_shown(deployment: SeedDeployment) -> None:
    assert SEED is not None
    text = SEED.read_text()
    (command,) = seed_document.commands(seed_document.section(text, "Get Outputs"))
    shown = deployment.run(command, answer="")
    names = {line.split(" = ")[0] for line in shown.splitlines() if " = " in line}
    assert set(seed_document.outputs(text)) <= names
    endpoint_line = seed_document.commands(seed_document.section(text, "Testing"))[0]
    assert endpoint_line in seed_document.RUN_AS_WRITTEN
    assert deployment.run(f'{endpoint_line} && printf %s "$API_ENDPOINT"', answer="").startswith("https://")
    assert deployment.run("terraform output -raw lambda_function_name", answer="") == "seren-replication-api"


def _changed_package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("README.txt", date_time=(2021, 1, 1, 0, 0, 0)), "new code\n")
    return buffer.getvalue()


def test_the_seed_update_command_moves_what_serves_the_api_and_nothing_else(
    deployment: SeedDeployment,
) -> None:
    assert SEED is not None
    *packaging, command = seed_document.commands(
        seed_document.section(SEED.read_text(), "Updating Lambda Code")
    )
    assert command in seed_document.RUN_AS_WRITTEN
    assert {seed_document.replacement(line) for line in packaging} == {"make package"}
    names = ("seren-replication-api", "seren-replication-launcher", "seren-replication-reaper")
    before = {name: deployment.function(name) for name in names}
    (deployment.package_dir / "api.zip").write_bytes(_changed_package())  # what `make package` does

    deployment.run(command)

    after = {name: deployment.function(name) for name in names}
    api_before, api_after = before[names[0]], after[names[0]]
    assert api_after["code"] != api_before["code"], "the API function's code did not change"
    assert len(api_after["versions"]) == len(api_before["versions"]) + 1, "no version was published"
    assert api_after["live_serves"] == api_after["code"], "the API's live alias serves the old code"
    for name in names[1:]:
        assert after[name] == before[name], f"{name} changed"


def test_a_deployment_of_the_keyed_api_function_moves_without_replacing(deployment: SeedDeployment) -> None:
    """Deployments made while the API function was `aws_lambda_function.service["api"]`."""
    deployment.run(
        "terraform state mv aws_lambda_function.coordinator 'aws_lambda_function.service[\"api\"]'", answer=""
    )
    plan = deployment.run("terraform plan -no-color", answer="")
    assert 'aws_lambda_function.service["api"] has moved to aws_lambda_function.coordinator' in plan
    # Nothing is replaced, and nothing of the API's changes (moto reports the other functions'
    # launch template version and the mapping's qualifier anew after any apply).
    assert re.search(r"Plan: 0 to add, \d+ to change, 0 to destroy|No changes\.", plan), plan
    for api_address in ("aws_lambda_function.coordinator", 'aws_lambda_alias.live["api"]'):
        assert f"# {api_address} will be" not in plan and f"# {api_address} must be" not in plan, plan
