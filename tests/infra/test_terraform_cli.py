"""The module checked by Terraform itself, with the real provider from the local mirror:
init (no backend, the committed lock file read-only), validate, fmt."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from local_cloud.terraform import MODULE_DIR, Terraform, find_terraform, unavailable_reason

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
