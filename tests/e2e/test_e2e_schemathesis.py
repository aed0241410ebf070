"""Schemathesis against the local stack's own /openapi.json: every phase (examples,
coverage, fuzzing, stateful) and every check, with a fixed seed and the repository's
schemathesis.toml; zero failures.

`unsupported_method` is left out on purpose: for a method a path has no route for, API
Gateway's HTTP API answers 404 (the local HTTP front does the same), never 405.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.e2e import ROOT, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
PHASES = ("Examples", "Coverage", "Fuzzing", "Stateful")


def test_schemathesis_finds_no_failure(tmp_path: Path) -> None:
    with running_stack(tmp_path / "state", "--max-concurrent-jobs", "1") as stack:
        run = subprocess.run(
            [
                SCHEMATHESIS,
                "--no-color",
                "run",
                f"{stack.url}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                "unsupported_method",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            cwd=ROOT,
            env={**os.environ, "SEREN_API_KEY": stack.key},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "Seed: 20261130" in output and "Configuration:" in output
    for phase in PHASES:
        assert f"✅ {phase}" in output or f"✅  {phase}" in output, (phase, output[-3000:])
    assert stack.key not in output
