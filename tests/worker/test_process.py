"""The engine's process: own process group, output lines, TERM then KILL, nothing left behind."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from worker.process import EngineProcess


def engine(script: str, env: dict[str, str] | None = None) -> tuple[EngineProcess, list[str]]:
    lines: list[str] = []
    process = EngineProcess([sys.executable, "-c", textwrap.dedent(script)], env or {}, lines.append)
    return process, lines


def wait_exited(process: EngineProcess, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not process.exited():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_lines_are_delivered_and_the_exit_code_returned() -> None:
    process, lines = engine("import sys; print('one'); print('two', file=sys.stderr); sys.exit(3)")
    wait_exited(process)
    assert process.finish() == 3
    assert sorted(lines) == ["one", "two"]


def test_the_engine_runs_in_its_own_process_group_with_only_the_given_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-engines")
    process, lines = engine(
        "import os; e=os.environ; print(os.getpgid(0), e.get('SOURCE_URL'), e.get('AWS_SECRET_ACCESS_KEY'))",
        {"SOURCE_URL": "postgresql://u:pw@db/x"},
    )
    wait_exited(process)
    process.finish()
    assert lines == [f"{process.pid} postgresql://u:pw@db/x None"]
    assert process.pid != os.getpgid(0)


def test_stop_sends_term_first() -> None:
    process, lines = engine(
        """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: (print('got TERM', flush=True), sys.exit(0)))
        print('ready', flush=True)
        time.sleep(60)
        """
    )
    while not lines:
        time.sleep(0.02)
    started = time.monotonic()
    assert process.stop(grace_seconds=10) == 0
    assert time.monotonic() - started < 5
    assert lines == ["ready", "got TERM"]


def test_stop_kills_an_engine_that_ignores_term_after_the_grace() -> None:
    process, lines = engine(
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('ready', flush=True)
        time.sleep(60)
        """
    )
    while not lines:
        time.sleep(0.02)
    started = time.monotonic()
    assert process.stop(grace_seconds=0.5) == -9
    assert 0.5 <= time.monotonic() - started < 5


def test_children_left_behind_by_the_engine_are_killed() -> None:
    process, lines = engine(
        """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
        print(child.pid, flush=True)
        """
    )
    wait_exited(process)
    while not lines:
        time.sleep(0.02)
    orphan = int(lines[0])
    assert alive(orphan)
    assert process.finish() == 0
    deadline = time.monotonic() + 5
    while alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(orphan)
