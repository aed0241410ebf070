"""The EC2 driver: runs what moto's instances would run.

For each new instance it runs the instance's user-data the way cloud-init does (the
script saved on the instance's disk and run by bash) as a local process tree in its own
session, with an instance metadata endpoint of its own as the workers' launch template
configures it (enabled or not, tokens required or optional). When the instance leaves the running states
(terminated by the worker, the reaper or anyone, or stopped), the whole session is killed:
TERM, then KILL after a grace period. A process that exits by itself is simply reaped.

A Spot interruption is played through EC2 itself: an instance tagged `INTERRUPT_TAG` (its
value: seconds of notice; `seren-remote local interrupt` sets it) gets the notice on its
metadata endpoint at once, and is terminated through the EC2 API when the notice runs out.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from local_cloud.imds import MetadataServer

logger = logging.getLogger(__name__)

RUNNING_STATES = ("pending", "running")
ALIVE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")
# Written in an instance environment value, stands for that instance's own directory (its disk).
INSTANCE_DIR = "{instance_dir}"
# Set in the environment of every instance's processes, so that their descendants can be found.
INSTANCE_MARKER = "LOCAL_CLOUD_INSTANCE_ID"
# On an instance: a Spot interruption notice of this many seconds is to be played.
INTERRUPT_TAG = "LocalCloudSpotInterruption"


@dataclass
class LocalInstance:
    instance_id: str
    directory: Path
    metadata: MetadataServer
    process: subprocess.Popen[bytes] | None
    started_at: float = field(default_factory=time.monotonic)
    exit_code: int | None = None
    killed: bool = False
    interrupt_at: float | None = None  # monotonic time the interrupted instance is terminated

    @property
    def session_id(self) -> int | None:
        return self.process.pid if self.process is not None else None


def instance_processes(instance_id: str, session_id: int | None) -> list[int]:
    """Every live process of the instance: its user-data's session, and anything that left
    the session (a worker starts its engine in a session of its own) but carries the
    instance's marker in its environment, as every descendant does."""
    marker = f"{INSTANCE_MARKER}={instance_id}".encode()
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            # Fields after the parenthesised command name: state ppid pgrp session ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            if int(fields[3]) == session_id or marker in (entry / "environ").read_bytes().split(b"\0"):
                members.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return members


def kill_instance_processes(instance_id: str, session_id: int | None, grace_seconds: float) -> None:
    """TERM every process of the instance, then KILL what is left after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in instance_processes(instance_id, session_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        if sig == signal.SIGKILL:
            return
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and instance_processes(instance_id, session_id):
            time.sleep(0.05)


class Ec2Driver:
    def __init__(
        self,
        ec2: Any,
        *,
        state_dir: Path,
        region: str,
        instance_env: dict[str, str],
        poll_interval_seconds: float = 1.0,
        kill_grace_seconds: float = 5.0,
        boot_seconds: float = 0.0,
        launch_template: dict[str, Any] | None = None,
    ) -> None:
        self._ec2 = ec2
        metadata_options = (launch_template or {}).get("MetadataOptions", {})
        self._metadata_enabled = metadata_options.get("HttpEndpoint", "enabled") == "enabled"
        self._tokens_required = metadata_options.get("HttpTokens", "required") == "required"
        self._dir = state_dir / "instances"
        self._region = region
        self._env = instance_env
        self._poll_interval = poll_interval_seconds
        self._grace = kill_grace_seconds
        self._boot_seconds = boot_seconds
        self._boot_due: dict[str, float] = {}  # instances seen, still booting
        self._instances: dict[str, LocalInstance] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ec2-driver", daemon=True)
        self._killers: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at EC2 now (something may have launched or terminated an instance)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with self._lock:
            instances = list(self._instances.values())
        for instance in instances:
            self._kill(instance)
        for killer in self._killers:
            killer.join(timeout=self._grace + 5)

    def processes(self) -> dict[str, list[int]]:
        """Live process ids per instance (for tests and the status file)."""
        with self._lock:
            instances = list(self._instances.values())
        return {
            i.instance_id: instance_processes(i.instance_id, i.session_id) if i.process else []
            for i in instances
        }

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.reconcile()
            except Exception:  # moto restarting or a transient error: look again next round
                logger.exception("EC2 driver round failed")
            wait = self._poll_interval
            if self._boot_due:
                wait = max(0.0, min(wait, min(self._boot_due.values()) - time.monotonic()))
            self._wake.wait(wait)
            self._wake.clear()

    def reconcile(self) -> None:
        states, interrupts = self._instance_states()
        now = time.monotonic()
        for instance_id, state in states.items():
            if state not in RUNNING_STATES or instance_id in self._instances:
                continue
            if self._boot_due.setdefault(instance_id, now + self._boot_seconds) <= now:
                del self._boot_due[instance_id]
                self._boot(instance_id)
        for instance_id in [i for i in self._boot_due if states.get(i) not in RUNNING_STATES]:
            del self._boot_due[instance_id]  # terminated before its user-data ran
        with self._lock:
            known = list(self._instances.values())
        for instance in known:
            if instance.process is not None and instance.exit_code is None:
                code = instance.process.poll()
                if code is not None:
                    instance.exit_code = code
                    logger.info("instance %s: user-data exited with %s", instance.instance_id, code)
            if not instance.killed and states.get(instance.instance_id) not in RUNNING_STATES:
                self._kill(instance)
            elif not instance.killed:
                self._play_interruption(instance, interrupts.get(instance.instance_id), now)

    def _play_interruption(self, instance: LocalInstance, notice_seconds: float | None, now: float) -> None:
        if notice_seconds is None:
            return
        if instance.interrupt_at is None:
            instance.interrupt_at = now + notice_seconds
            at = datetime.now(UTC) + timedelta(seconds=notice_seconds)
            instance.metadata.announce_interruption(at.strftime("%Y-%m-%dT%H:%M:%SZ"))
            logger.info("instance %s: Spot interruption notice, %s s", instance.instance_id, notice_seconds)
        elif now >= instance.interrupt_at:
            self._ec2.terminate_instances(InstanceIds=[instance.instance_id])
            logger.info("instance %s: terminated at the end of its notice", instance.instance_id)

    def _instance_states(self) -> tuple[dict[str, str], dict[str, float]]:
        """Each live instance's state, and the notice (seconds) of those to interrupt."""
        states: dict[str, str] = {}
        interrupts: dict[str, float] = {}
        paginator = self._ec2.get_paginator("describe_instances")
        filters = [{"Name": "instance-state-name", "Values": list(ALIVE_STATES)}]
        for page in paginator.paginate(Filters=filters):
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    states[instance["InstanceId"]] = instance["State"]["Name"]
                    for tag in instance.get("Tags", []):
                        if tag["Key"] == INTERRUPT_TAG:
                            interrupts[instance["InstanceId"]] = float(tag["Value"])
        return states, interrupts

    def _boot(self, instance_id: str) -> None:
        described = self._ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        encoded = self._ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        user_data = base64.b64decode(encoded.get("UserData", {}).get("Value") or "").decode()
        directory = self._dir / instance_id
        directory.mkdir(parents=True, exist_ok=True)
        metadata = MetadataServer(
            instance_id=instance_id,
            region=self._region,
            instance_type=described.get("InstanceType", "t3.medium"),
            availability_zone=described.get("Placement", {}).get("AvailabilityZone", f"{self._region}a"),
            user_data=user_data,
            tokens_required=self._tokens_required,
        )
        if self._metadata_enabled:
            metadata.start()
        process = None
        if user_data.strip():
            # cloud-init keeps the script on the instance's disk and runs it from there.
            script = directory / "user-data"
            script.write_text(user_data)
            script.chmod(0o700)
            env = {name: value.replace(INSTANCE_DIR, str(directory)) for name, value in self._env.items()}
            if self._metadata_enabled:
                env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = metadata.endpoint
            else:
                env["AWS_EC2_METADATA_DISABLED"] = "true"
            env[INSTANCE_MARKER] = instance_id
            with (directory / "console.log").open("ab") as console:
                process = subprocess.Popen(
                    ["bash", str(script)],
                    cwd=directory,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        with self._lock:
            self._instances[instance_id] = LocalInstance(instance_id, directory, metadata, process)
        logger.info("instance %s booted (pid %s)", instance_id, process.pid if process else None)

    def _kill(self, instance: LocalInstance) -> None:
        instance.killed = True
        process = instance.process

        def kill() -> None:
            if process is not None:
                kill_instance_processes(instance.instance_id, process.pid, self._grace)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    instance.exit_code = process.wait(timeout=self._grace)
            instance.metadata.stop()
            with self._lock:
                self._instances.pop(instance.instance_id, None)
            logger.info("instance %s: stopped", instance.instance_id)

        killer = threading.Thread(target=kill, name=f"kill-{instance.instance_id}", daemon=True)
        self._killers = [k for k in self._killers if k.is_alive()] + [killer]
        killer.start()
