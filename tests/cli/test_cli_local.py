"""`seren-remote local up`: its flags reach the module's variables."""

from __future__ import annotations

from typing import Any

import pytest

from cli import local as local_cli
from cli.main import build_parser
from local_cloud.provision import Network
from local_cloud.stack import StackOptions, module_variables

NETWORK = Network(vpc_id="vpc-0123456789abcdef0", subnet_ids=["subnet-0123456789abcdef0"], image_id="ami-0")


def options_of(monkeypatch: pytest.MonkeyPatch, *flags: str) -> StackOptions:
    taken: dict[str, Any] = {}

    def run(options: StackOptions) -> int:
        taken["options"] = options
        return 0

    monkeypatch.setattr("local_cloud.stack.run", run)
    args = build_parser().parse_args(["local", "up", *flags])
    assert local_cli.run_up(args) == 0
    return taken["options"]  # type: ignore[no-any-return]


def test_the_running_limit_per_owner_is_every_slot_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    default = module_variables(options_of(monkeypatch, "--max-concurrent-jobs", "3"), NETWORK)
    assert default["max_running_jobs_per_owner"] == 3
    given = options_of(monkeypatch, "--max-concurrent-jobs", "3", "--max-running-jobs-per-owner", "1")
    assert module_variables(given, NETWORK)["max_running_jobs_per_owner"] == 1
