# ruff: noqa: S310  (the loopback URL of the stack under test)
"""A local stack in a child process, driven as a user would: over HTTP, plus read access
to its moto for checks (instances, items, log events)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from local_cloud.ec2_driver import instance_processes

ROOT = Path(__file__).resolve().parents[2]
SEREN_REMOTE = str(Path(sys.executable).parent / "seren-remote")
TERMINAL = ("completed", "failed", "timeout", "cancelled")
PASSWORD = "s3cret-test-pw-e2e"


def wait_for(condition: Callable[[], Any], timeout: float, message: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s: {message}")


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    state_dir: Path
    info: dict[str, Any]
    # Every API answer body, to check that none holds a password.
    answers: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return str(self.info["api_endpoint"])

    @property
    def key(self) -> str:
        return str(self.info["api_key"])

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.info["aws_endpoint_url"],
            region_name=self.info["region"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    # -- the API ----------------------------------------------------------------------

    def api(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"x-api-key": self.key, "content-type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, text = answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        with self._lock:
            self.answers.append(text)
        return status, json.loads(text) if text else None

    def submit(self, command: str, source: str, target: str, **fields: Any) -> str:
        body = {
            "schema_version": "1.1",
            "command": command,
            "source_url": source,
            "target_url": target,
            **fields,
        }
        status, answer = self.api("POST", "/jobs", body)
        assert status == 201, answer
        return str(answer["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        status, answer = self.api("GET", f"/jobs/{job_id}")
        assert status == 200, answer
        return dict(answer)

    def follow(
        self, job_id: str, until: tuple[str, ...] = TERMINAL, timeout: float = 60
    ) -> tuple[dict[str, Any], list[str]]:
        """Poll the job until its status is in `until`; returns it and every status seen."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if not seen or seen[-1] != job["status"]:
                seen.append(job["status"])
            if job["status"] in until:
                return job, seen
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not reach {until} in {timeout} s; statuses {seen}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        status, answer = self.api("POST", f"/jobs/{job_id}/cancel")
        assert status in (200, 202), answer
        return dict(answer)

    # -- what AWS would show ----------------------------------------------------------

    def item(self, job_id: str) -> dict[str, Any]:
        table = boto3.resource(
            "dynamodb",
            endpoint_url=self.info["aws_endpoint_url"],
            region_name=self.info["region"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).Table(self.info["table_name"])
        return dict(table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item") or {})

    def instance_state(self, instance_id: str) -> str:
        answer = self.client("ec2").describe_instances(InstanceIds=[instance_id])
        return str(answer["Reservations"][0]["Instances"][0]["State"]["Name"])

    def active_instances(self) -> list[str]:
        answer = self.client("ec2").describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        )
        return [i["InstanceId"] for r in answer["Reservations"] for i in r["Instances"]]

    def wait_terminated(self, instance_id: str, timeout: float = 15) -> None:
        wait_for(
            lambda: self.instance_state(instance_id) == "terminated", timeout, f"{instance_id} terminated"
        )

    def wait_no_processes(self, instance_id: str, timeout: float = 15) -> None:
        wait_for(
            lambda: not instance_processes(instance_id, None), timeout, f"processes of {instance_id} gone"
        )

    def worker_pid(self, job_id: str) -> int:
        """The worker process (python -m worker JOB_ID) of a running job."""

        def find() -> int | None:
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    with contextlib.suppress(OSError):
                        argv = (entry / "cmdline").read_bytes().split(b"\0")
                        if b"worker" in argv and job_id.encode() in argv:
                            return int(entry.name)
            return None

        return int(wait_for(find, 15, f"worker process of {job_id}"))

    def wait_idle(self, timeout: float = 60) -> None:
        """No instance pending or running: every slot is free again."""
        wait_for(lambda: not self.active_instances(), timeout, "no active instances")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


# Short intervals keep the end-to-end tests within minutes; the heartbeat timeout leaves room
# for heartbeats delayed by a loaded machine.
E2E_SETTINGS = (
    "--max-concurrent-jobs",
    "2",
    "--reaper-interval",
    "1",
    "--heartbeat-interval",
    "1",
    "--heartbeat-timeout",
    "8",
)


def start_stack(
    state_dir: Path,
    *extra: str,
    settings: tuple[str, ...] = E2E_SETTINGS,
    checkout: Path = ROOT,
) -> RunningStack:
    """`local up` of `checkout` (another checkout runs with its own virtualenv)."""
    seren_remote = SEREN_REMOTE if checkout == ROOT else str(checkout / ".venv" / "bin" / "seren-remote")
    argv = [seren_remote, "local", "up", "--port", "0", "--state-dir", str(state_dir), *settings, *extra]
    console = (state_dir.parent / f"{state_dir.name}-console.log").open("wb")
    process = subprocess.Popen(
        argv, cwd=checkout, stdout=console, stderr=subprocess.STDOUT, env=os.environ.copy()
    )
    stack_file = state_dir / "stack.json"
    try:
        wait_for(lambda: stack_file.exists() or process.poll() is not None, 90, "stack.json")
    except AssertionError:
        process.kill()
        raise
    if process.poll() is not None:
        raise AssertionError(f"local up exited with {process.returncode}; see {console.name}")
    return RunningStack(process=process, state_dir=state_dir, info=json.loads(stack_file.read_text()))


@contextlib.contextmanager
def running_stack(
    state_dir: Path, *extra: str, settings: tuple[str, ...] = E2E_SETTINGS
) -> Iterator[RunningStack]:
    stack = start_stack(state_dir, *extra, settings=settings)
    try:
        yield stack
    finally:
        if stack.process.poll() is None:
            assert stack.stop() == 0
    # SIGTERM stops everything the stack started: moto and every instance's processes.
    assert not Path(f"/proc/{stack.info['moto_pid']}").exists()
    for instance_dir in (state_dir / "instances").glob("i-*"):
        assert not instance_processes(instance_dir.name, None), instance_dir.name


# A database on the source whose table the e2e tests lock to hold a job open on demand.
BLOCKER_DATABASE = "blocker"
