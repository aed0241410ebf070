"""The seed's deployment document against the module, read offline: every command of it
runs as written (tests/e2e/test_e2e_seed_commands.py runs those) or terraform/README.md says
what to type instead; its tfvars set every variable the module requires; its outputs and
its test requests exist."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from terraform_config import TERRAFORM_DIR, TerraformConfig, attr, blocks

from jobs.spec import JobSpec
from tests.support import seed_document

SEED = seed_document.find_seed_document()
pytestmark = pytest.mark.skipif(SEED is None, reason=f"no {seed_document.DOCUMENT} above the checkout")
README = (TERRAFORM_DIR / "README.md").read_text()


@pytest.fixture(scope="module")
def seed() -> str:
    assert SEED is not None
    return SEED.read_text()


def test_every_seed_command_runs_as_written_or_the_readme_says_what_to_type(seed: str) -> None:
    commands = seed_document.commands(seed)
    unaccounted = [
        c
        for c in commands
        if c not in seed_document.RUN_AS_WRITTEN
        and c not in seed_document.SETUP
        and seed_document.replacement(c) is None
    ]
    assert unaccounted == [], "commands of the seed that no test holds to their word"
    assert set(seed_document.RUN_AS_WRITTEN) <= set(commands)
    for command in commands:
        instead = seed_document.replacement(command)
        assert instead is None or instead in README, f"README does not say what to type for {command!r}"
    for command in seed_document.RUN_AS_WRITTEN:
        if command.startswith("terraform"):
            assert command in README, f"README no longer shows {command!r}"


def test_the_seed_update_command_targets_the_api_function(seed: str, tf: TerraformConfig) -> None:
    """Terraform accepts a target that matches nothing and does nothing: the address must exist."""
    (target,) = [
        argument.removeprefix("-target=")
        for command in seed_document.commands(seed_document.section(seed, "Updating Lambda Code"))
        for argument in shlex.split(command)
        if argument.startswith("-target=")
    ]
    kind, name = target.split(".")
    function = tf.resource(kind, name)
    assert "for_each" not in function and "count" not in function
    assert attr(function, "function_name") == '${local.functions["api"].name}'


def test_the_seed_tfvars_set_every_variable_the_module_requires(seed: str, tf: TerraformConfig) -> None:
    _, values = seed_document.tfvars(seed)
    assert len(values) == 6
    assert set(values) <= set(tf.variables)
    required = {name for name, body in tf.variables.items() if "default" not in body}
    assert required <= set(values), "the seed's tfvars no longer plan"
    for name, value in values.items():
        if name != "worker_ami_id":  # the seed's placeholder for the reader's AMI
            assert attr(tf.variables[name], "default") == value, name
    for network in ("vpc_id", "subnet_ids"):
        assert attr(tf.variables[network], "default") is None, network


def test_without_a_vpc_the_workers_use_the_default_one_and_every_plan_warns(tf: TerraformConfig) -> None:
    assert attr(tf.data["aws_vpc"]["default"], "default") is True
    assert attr(tf.data["aws_vpc"]["default"], "count") in {
        "${var.vpc_id == null ? 1 : 0}",
        "${var.vpc_id == None ? 1 : 0}",
    }  # hcl2 writes null as None
    subnet_filters = {
        attr(f, "name"): attr(f, "values") for f in blocks(tf.data["aws_subnets"]["default"], "filter")
    }
    assert subnet_filters == {"vpc-id": ["${data.aws_vpc.default[0].id}"], "default-for-az": ["true"]}
    assert attr(tf.resource("aws_security_group", "worker"), "vpc_id") == "${local.vpc_id}"
    network_text = (TERRAFORM_DIR / "network.tf").read_text()
    assert re.search(
        r'check "workers_network" \{\s*assert \{\s*condition\s*=\s*var\.vpc_id != null', network_text
    )
    # Only the network's own checks read the variables; everything else the resolved locals.
    readers = {
        p.name for p in TERRAFORM_DIR.glob("*.tf") if re.search(r"var\.(subnet_ids|vpc_id)\b", p.read_text())
    }
    assert readers == {"variables.tf", "network.tf", "worker.tf"}
    worker_text = (TERRAFORM_DIR / "worker.tf").read_text()
    assert re.findall(r"var\.(?:subnet_ids|vpc_id)\b.*", worker_text) == [
        "var.vpc_id == null) == (var.subnet_ids == null)"
    ]
    assert "name a VPC with private subnets" in " ".join(README.split())


def test_the_seed_outputs_exist_and_are_documented(seed: str, tf: TerraformConfig) -> None:
    outputs = seed_document.outputs(seed)
    assert outputs
    for name in outputs:
        assert name in tf.outputs, name
        assert f"`{name}`" in README, name


def test_the_seed_test_requests_name_routes_the_api_serves_with_a_body_it_accepts(seed: str) -> None:
    routes = set(json.loads((TERRAFORM_DIR / "generated" / "api_routes.json").read_text()))
    post, get = (
        c for c in seed_document.commands(seed_document.section(seed, "Testing")) if c.startswith("curl")
    )
    arguments = shlex.split(post)
    assert arguments[1:4] == ["-X", "POST", "${API_ENDPOINT}/jobs"] and "POST /jobs" in routes
    JobSpec.model_validate(json.loads(arguments[arguments.index("-d") + 1]))
    assert shlex.split(get)[-1] == "${API_ENDPOINT}/jobs/JOB_ID" and "GET /jobs/{job_id}" in routes


def test_the_terraform_the_seed_installs_is_one_the_module_accepts(seed: str, tf: TerraformConfig) -> None:
    (installed,) = {
        m for c in seed_document.commands(seed) for m in re.findall(r"terraform_(\d+\.\d+)\.\d+_", c)
    }
    (settings,) = tf.settings
    assert attr(settings, "required_version") == f">= {installed}"
    for command in seed_document.SETUP:
        assert command in README, f"README no longer shows the seed's setup line {command!r}"
