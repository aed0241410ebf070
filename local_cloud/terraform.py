"""Runs the repository's Terraform module: validate it, or apply it against the local cloud.

The module directory is never written to: Terraform's working data (`TF_DATA_DIR`), the
state and the variables live in a directory of the caller's, and the provider comes from a
filesystem mirror (no registry access). The endpoint override is the provider's own
`AWS_ENDPOINT_URL` setting, so the module runs unchanged, provider block included.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODULE_DIR = Path(__file__).resolve().parents[1] / "terraform"
PROVIDER_SOURCE = Path("registry.terraform.io") / "hashicorp" / "aws"
# Set it to the folder holding registry.terraform.io/ when the mirror is elsewhere.
MIRROR_VARIABLE = "TERRAFORM_PLUGIN_MIRROR"
MIRROR_ROOTS = (
    Path("/opt"),
    Path("/usr/local/share/terraform/plugins"),
    Path("/usr/share/terraform/plugins"),
    Path.home() / ".terraform.d" / "plugins",
    Path.home() / ".local" / "share" / "terraform" / "plugins",
)


def find_terraform() -> str | None:
    return shutil.which("terraform")


def _holds_provider(folder: Path) -> bool:
    return any((folder / PROVIDER_SOURCE).glob("*/*/terraform-provider-aws*"))


def find_plugin_mirror() -> Path | None:
    """The folder holding registry.terraform.io/hashicorp/aws: the variable's, else a known root
    or one of its direct subfolders (such as /opt/tf-plugins)."""
    configured = os.environ.get(MIRROR_VARIABLE)
    if configured:
        return Path(configured) if _holds_provider(Path(configured)) else None
    for root in MIRROR_ROOTS:
        if not root.is_dir():
            continue
        try:
            candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
        except OSError:
            continue
        for candidate in candidates:
            if _holds_provider(candidate):
                return candidate
    return None


def unavailable_reason() -> str | None:
    """Why the module cannot be run here, or None when it can."""
    if find_terraform() is None:
        return "terraform is not on PATH"
    if find_plugin_mirror() is None:
        return (
            f"no filesystem mirror of hashicorp/aws (set {MIRROR_VARIABLE} to the folder "
            "holding registry.terraform.io/)"
        )
    return None


class TerraformError(RuntimeError):
    pass


@dataclass
class Terraform:
    """One working directory of the module: its data, state, variables and log."""

    work_dir: Path
    environment: dict[str, str]
    module_dir: Path = MODULE_DIR

    @property
    def state_file(self) -> Path:
        return self.work_dir / "terraform.tfstate"

    @property
    def var_file(self) -> Path:
        return self.work_dir / "terraform.tfvars.json"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "terraform.log"

    def _run(self, *args: str, timeout: float = 600) -> str:
        terraform = find_terraform()
        mirror = find_plugin_mirror()
        if terraform is None or mirror is None:
            raise TerraformError(unavailable_reason() or "terraform unavailable")
        env = {
            **os.environ,
            **self.environment,
            "TF_DATA_DIR": str(self.work_dir / ".terraform"),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            # No CLI configuration of the machine's: the mirror is given on the command line.
            "TF_CLI_CONFIG_FILE": os.devnull,
        }
        command = [terraform, f"-chdir={self.module_dir}", *args]
        if args[0] == "init":
            command += [f"-plugin-dir={mirror}", "-lockfile=readonly"]
        self.work_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        with self.log_file.open("a") as log:
            log.write(f"$ terraform {' '.join(args)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            raise TerraformError(f"terraform {args[0]} failed; see {self.log_file}:\n{result.stderr[-3000:]}")
        return result.stdout

    def init(self, *, backend: bool = True) -> None:
        self._run("init", "-no-color", *([] if backend else ["-backend=false"]))

    def validate(self) -> None:
        self._run("validate", "-no-color")

    def write_variables(self, variables: dict[str, Any]) -> None:
        self.var_file.write_text(json.dumps(variables, indent=2, sort_keys=True) + "\n")

    def plan(self) -> str:
        return self._run(
            "plan", "-no-color", "-lock=false", f"-state={self.state_file}", f"-var-file={self.var_file}"
        )

    def apply(self) -> None:
        self._run("apply", *self._changing)

    def destroy(self) -> None:
        self._run("destroy", *self._changing)

    @property
    def _changing(self) -> tuple[str, ...]:
        return ("-no-color", "-auto-approve", f"-state={self.state_file}", f"-var-file={self.var_file}")

    def outputs(self) -> dict[str, Any]:
        raw = json.loads(self._run("output", "-json", f"-state={self.state_file}"))
        return {name: entry["value"] for name, entry in raw.items()}

    def resources(self) -> list[str]:
        """Addresses of what the state holds."""
        if not self.state_file.exists():
            return []
        return self._run("state", "list", f"-state={self.state_file}").split()
