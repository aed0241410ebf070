# ruff: noqa: S310  (loopback URLs of the metadata servers under test)
"""The EC2 driver and its metadata endpoint on their own, with fake user-data scripts."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local_cloud.ec2_driver import Ec2Driver
from local_cloud.imds import MetadataServer

# Starts background children (one in a session of its own, as the worker starts its
# engine), then writes what it learned from IMDSv2. The shell writes that itself (printf is a
# builtin) once the IMDS client has exited: a client still exiting when the test lists the
# instance's processes could be gone before the test read its command line.
SLEEPER = """#!/bin/bash
sleep 300 &
setsid sleep 301 &
learned=$(python3 - <<'PY'
import os, urllib.request
base = os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"].rstrip("/")
token = urllib.request.urlopen(urllib.request.Request(
    base + "/latest/api/token", method="PUT",
    headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})).read().decode()
iid = urllib.request.urlopen(urllib.request.Request(
    base + "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token})).read().decode()
print(iid, os.environ["MARKER"])
PY
)
printf '%s' "$learned" > instance-id
wait
"""
QUICK = "#!/bin/bash\necho done > finished\n"


def wait_for(condition: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def ec2(aws_env: None, tmp_path: Path) -> Iterator[tuple[Any, Ec2Driver]]:
    with mock_aws():
        client = boto3.client("ec2")
        driver = Ec2Driver(
            client,
            state_dir=tmp_path,
            region="us-east-1",
            instance_env={"PATH": os.environ["PATH"], "MARKER": "from-driver"},
            kill_grace_seconds=1,
        )
        (tmp_path / "instances").mkdir()
        yield client, driver
        driver.stop()


def launch(client: Any, user_data: str) -> str:
    image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    answer = client.run_instances(ImageId=image, MinCount=1, MaxCount=1, UserData=user_data)
    return str(answer["Instances"][0]["InstanceId"])


def test_runs_user_data_with_imds_and_kills_the_tree_on_terminate(
    ec2: tuple[Any, Ec2Driver], tmp_path: Path
) -> None:
    client, driver = ec2
    instance_id = launch(client, SLEEPER)
    driver.reconcile()
    marker = tmp_path / "instances" / instance_id / "instance-id"
    assert wait_for(lambda: marker.exists() and marker.read_text()) == f"{instance_id} from-driver"
    pids = driver.processes()[instance_id]
    commands = {Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip() for pid in pids}
    assert {b"sleep 300", b"sleep 301"} <= commands
    client.terminate_instances(InstanceIds=[instance_id])
    driver.reconcile()
    wait_for(lambda: instance_id not in driver.processes())
    assert [pid for pid in pids if _alive(pid)] == []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_process_that_exits_by_itself_is_reaped(ec2: tuple[Any, Ec2Driver], tmp_path: Path) -> None:
    client, driver = ec2
    instance_id = launch(client, QUICK)
    driver.reconcile()
    wait_for(lambda: (tmp_path / "instances" / instance_id / "finished").exists())
    wait_for(lambda: (driver.reconcile(), driver.processes()[instance_id] == [])[1])
    # The instance keeps running (as on EC2) until someone terminates it.
    state = client.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] == "running"


def test_instances_started_once(ec2: tuple[Any, Ec2Driver], tmp_path: Path) -> None:
    client, driver = ec2
    instance_id = launch(client, "#!/bin/bash\necho run >> runs\n")
    for _ in range(3):
        driver.reconcile()
    runs = tmp_path / "instances" / instance_id / "runs"
    wait_for(runs.exists)
    time.sleep(0.2)
    assert runs.read_text() == "run\n"


@pytest.fixture
def metadata() -> Iterator[MetadataServer]:
    server = MetadataServer(
        instance_id="i-0123", region="us-east-1", instance_type="t3.medium", availability_zone="us-east-1a"
    ).start()
    yield server
    server.stop()


def _get(url: str, headers: dict[str, str], method: str = "GET") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method=method, headers=headers), timeout=5
        ) as a:
            return a.status, a.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_imdsv2_needs_a_session_token(metadata: MetadataServer) -> None:
    base = metadata.endpoint.rstrip("/")
    assert _get(base + "/latest/meta-data/instance-id", {})[0] == 401
    assert _get(base + "/latest/api/token", {}, method="PUT")[0] == 400
    ttl = "X-aws-ec2-metadata-token-ttl-seconds"
    assert _get(base + "/latest/api/token", {ttl: "0"}, method="PUT")[0] == 400
    status, token = _get(base + "/latest/api/token", {ttl: "60"}, method="PUT")
    assert status == 200
    assert _get(base + "/latest/meta-data/instance-id", {"X-aws-ec2-metadata-token": "wrong"})[0] == 401
    assert _get(base + "/latest/meta-data/instance-id", {"X-aws-ec2-metadata-token": token}) == (
        200,
        "i-0123",
    )
    assert _get(base + "/latest/meta-data/placement/region", {"X-aws-ec2-metadata-token": token}) == (
        200,
        "us-east-1",
    )
