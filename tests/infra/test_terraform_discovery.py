"""Finding Terraform's provider mirror, and what `local up --terraform` says without one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from local_cloud.terraform import MIRROR_VARIABLE, find_plugin_mirror

SEREN_REMOTE = str(Path(sys.executable).parent / "seren-remote")


def test_the_mirror_variable_names_the_folder_holding_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = tmp_path / "registry.terraform.io" / "hashicorp" / "aws" / "5.100.0" / "linux_amd64"
    provider.mkdir(parents=True)
    monkeypatch.setenv(MIRROR_VARIABLE, str(tmp_path))
    assert find_plugin_mirror() is None  # no provider binary in it yet
    (provider / "terraform-provider-aws_v5.100.0_x5").touch()
    assert find_plugin_mirror() == tmp_path


def test_local_up_terraform_without_a_mirror_says_why(tmp_path: Path) -> None:
    env = {**os.environ, MIRROR_VARIABLE: str(tmp_path / "nothing-here")}
    result = subprocess.run(
        [SEREN_REMOTE, "local", "up", "--terraform", "--port", "0", "--state-dir", str(tmp_path / "state")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no filesystem mirror of hashicorp/aws" in result.stderr
