"""End to end: the local stack (moto, the handlers, the drivers, real worker processes)
and real PostgreSQL, driven over HTTP."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest

from jobs.job_logs import WRITER_TAG, job_log_group
from local_cloud.ec2_driver import instance_processes
from local_cloud.postgres import LocalPostgres
from local_cloud.sample_data import SAMPLE_DATABASE, row_counts, table_checksums
from tests.support.e2e import BLOCKER_DATABASE, PASSWORD, TERMINAL, RunningStack, running_stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

V1_STATUSES = {"provisioning", "running", "completed", "failed"}


def blocked_job(stack: RunningStack, source: LocalPostgres, target: LocalPostgres) -> str:
    """A job that stays `running` while `held_lock` holds the blocker table."""
    job_id = stack.submit(
        "verify", source.url(), target.url(), filter={"include_databases": [BLOCKER_DATABASE]}
    )
    stack.follow(job_id, until=("running",), timeout=30)
    return job_id


def argv_of(pids: list[int]) -> list[str]:
    lines = []
    for pid in pids:
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return lines


def test_init_copies_the_source_and_ends_cleanly(
    stack: RunningStack, source: LocalPostgres, target: LocalPostgres
) -> None:
    job_id = stack.submit("init", source.url(), target.url())
    job, seen = stack.follow(job_id, timeout=90)
    assert job["status"] == "completed", job
    assert "running" in seen
    assert job["started_at"] and job["completed_at"]
    assert job["started_at"] <= job["completed_at"]
    assert job["progress"]["databases_completed"] == job["progress"]["databases_total"] >= 2
    assert row_counts(target.url()) == row_counts(source.url())
    assert table_checksums(target.url()) == table_checksums(source.url())

    instance_id = stack.item(job_id)["instance_id"]
    stack.wait_terminated(instance_id)
    stack.wait_no_processes(instance_id)
    status, logs = stack.api("GET", f"/jobs/{job_id}/logs")
    assert status == 200
    assert any("completed" in line for line in logs["logs"])
    assert "credentials" not in stack.item(job_id)
    # The lines came from the job's own log group, which the launcher gave to its instance.
    group_name = job_log_group(stack.info["worker_log_group"], job_id)
    [group] = stack.client("logs").describe_log_groups(logGroupNamePrefix=group_name)["logGroups"]
    tags = stack.client("logs").list_tags_for_resource(resourceArn=group["arn"].removesuffix(":*"))["tags"]
    assert tags[WRITER_TAG].endswith(f":{instance_id}")


def test_verify_passes_then_fails_after_a_change(
    stack: RunningStack, source: LocalPostgres, target: LocalPostgres
) -> None:
    include = {"include_databases": [SAMPLE_DATABASE]}
    init = stack.submit("init", source.url(), target.url(), filter=include)
    assert stack.follow(init, timeout=90)[0]["status"] == "completed"
    verify = stack.submit("verify", source.url(), target.url(), filter=include)
    assert stack.follow(verify, timeout=60)[0]["status"] == "completed"

    with psycopg.connect(target.url(SAMPLE_DATABASE)) as conn:
        conn.execute("UPDATE sales.customers SET name = 'changed' WHERE id = 7")
    again = stack.submit("verify", source.url(), target.url(), filter=include)
    job, _ = stack.follow(again, timeout=60)
    assert job["status"] == "failed"
    assert "sales.customers" in job["error"]
    # The worker sends its last log lines just before its instance ends.
    stack.wait_terminated(stack.item(again)["instance_id"])
    assert any("sales.customers" in line for line in stack.job(again)["logs"])


def test_killed_worker_is_retried_and_a_cancel_frees_its_slot_for_a_queued_job(
    stack: RunningStack, source: LocalPostgres, target: LocalPostgres, held_lock: None
) -> None:
    stack.wait_idle()
    victim = blocked_job(stack, source, target)
    other = blocked_job(stack, source, target)
    # Both slots are taken: this one waits in the queue.
    queued = stack.submit(
        "verify", source.url(), source.url(), filter={"include_databases": [SAMPLE_DATABASE]}
    )
    stack.follow(queued, until=("queued",), timeout=15)

    instance_id = stack.item(victim)["instance_id"]
    processes = instance_processes(instance_id, None)
    assert len(processes) >= 3  # user-data shell, worker, engine
    for line in argv_of(processes):
        assert PASSWORD not in line
    os.kill(stack.worker_pid(victim), signal.SIGKILL)

    # Its attempt is lost (worker.sh terminates the instance after the worker): the job goes
    # on with attempt 2 on a new instance, keeping its slot.
    def retried() -> dict | None:
        job = stack.job(victim)
        return job if job["attempt"] == 2 and job["status"] == "running" else None

    job = wait_for(retried, 90, "the victim's second attempt running")
    [lost] = job["lost_attempts"]
    assert lost["attempt"] == 1
    stack.wait_terminated(instance_id)
    stack.wait_no_processes(instance_id)
    assert stack.job(queued)["status"] == "queued"
    # Cancelled, it frees its slot: the queued job gets it and runs to the end.
    stack.cancel(victim)
    assert stack.follow(victim, timeout=60)[0]["status"] == "cancelled"
    job, seen = stack.follow(queued, timeout=60)
    assert job["status"] == "completed", job
    assert "running" in seen

    stack.cancel(other)
    assert stack.follow(other, timeout=60)[0]["status"] == "cancelled"


def test_cancel_while_queued_and_while_running(
    stack: RunningStack, source: LocalPostgres, target: LocalPostgres, held_lock: None
) -> None:
    stack.wait_idle()
    first = blocked_job(stack, source, target)
    second = blocked_job(stack, source, target)
    queued = stack.submit(
        "verify", source.url(), target.url(), filter={"include_databases": [BLOCKER_DATABASE]}
    )
    stack.follow(queued, until=("queued",), timeout=15)

    stack.cancel(queued)
    job, _ = stack.follow(queued, timeout=15)
    assert job["status"] == "cancelled"
    assert "instance_id" not in stack.item(queued)

    instances = [stack.item(job_id)["instance_id"] for job_id in (first, second)]
    for job_id in (first, second):
        stack.cancel(job_id)
    for job_id, instance_id in zip((first, second), instances, strict=True):
        job, _ = stack.follow(job_id, timeout=60)
        assert job["status"] == "cancelled", job
        stack.wait_terminated(instance_id)
        stack.wait_no_processes(instance_id)


def test_cancel_while_provisioning(tmp_path: Path, source: LocalPostgres, target: LocalPostgres) -> None:
    # Instances that take a few seconds to boot, as on EC2, leave time to cancel in between.
    with running_stack(tmp_path / "state", "--instance-boot-seconds", "5") as slow:
        job_id = slow.submit("verify", source.url(), target.url())
        slow.follow(job_id, until=("provisioning",), timeout=15)
        instance_id = wait_for(lambda: slow.item(job_id).get("instance_id"), 10, "instance launched")
        slow.cancel(job_id)
        job, seen = slow.follow(job_id, timeout=30)
        assert job["status"] == "cancelled"
        assert "running" not in seen
        slow.wait_terminated(instance_id)
        time.sleep(6)  # past the boot time: the user-data of a terminated instance never runs
        assert not instance_processes(instance_id, None)
        assert not (slow.state_dir / "instances" / instance_id / "user-data").exists()


def test_burst_never_exceeds_the_slots(stack: RunningStack, source: LocalPostgres) -> None:
    stack.wait_idle()
    most = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, len(stack.active_instances()))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        jobs = [
            stack.submit(
                "verify", source.url(), source.url(), filter={"include_databases": [SAMPLE_DATABASE]}
            )
            for _ in range(10)
        ]
        outcomes = [stack.follow(job_id, timeout=120)[0]["status"] for job_id in jobs]
    finally:
        done.set()
        sampler.join()
    assert outcomes == ["completed"] * 10
    assert 1 <= most <= 2


def test_a_1_0_client_sees_only_its_four_words(
    stack: RunningStack, source: LocalPostgres, target: LocalPostgres
) -> None:
    # The body of the seed README's curl example: no schema_version, empty filter and options.
    status, answer = stack.api(
        "POST",
        "/jobs",
        {
            "command": "init",
            "source_url": source.url(),
            "target_url": target.url(),
            "filter": {},
            "options": {},
        },
    )
    assert status == 201
    assert answer["status"] == "provisioning"
    job, seen = stack.follow(answer["job_id"], until=("completed", "failed"), timeout=90)
    assert set(seen) <= V1_STATUSES, seen
    assert job["status"] == "completed"

    status, answer = stack.api(
        "POST", "/jobs", {"command": "verify", "source_url": source.url(), "target_url": target.url()}
    )
    stack.cancel(answer["job_id"])
    job, seen = stack.follow(answer["job_id"], until=("completed", "failed"), timeout=60)
    assert set(seen) <= V1_STATUSES, seen
    if job["status"] == "failed":  # unless the job finished before the cancel landed
        assert "cancel" in job["error"].lower()


def test_no_password_anywhere(stack: RunningStack) -> None:
    """After everything above: API answers, log events, items, user-data, local logs."""
    assert stack.answers
    for text in stack.answers:
        assert PASSWORD not in text
    logs = stack.client("logs")
    # The workers' group (boot logs) and each job's own group under it.
    groups = logs.describe_log_groups(logGroupNamePrefix=stack.info["worker_log_group"])["logGroups"]
    streams = [
        (group["logGroupName"], log_stream["logStreamName"])
        for group in groups
        for log_stream in logs.describe_log_streams(logGroupName=group["logGroupName"])["logStreams"]
    ]
    assert streams
    for group_name, stream_name in streams:
        events = logs.get_log_events(logGroupName=group_name, logStreamName=stream_name)["events"]
        for event in events:
            assert PASSWORD not in event["message"]
    items = stack.client("dynamodb").scan(TableName=stack.info["table_name"])["Items"]
    assert items
    for item in items:
        assert PASSWORD not in repr(item)
        status = item.get("status", {}).get("S")
        if status in TERMINAL:
            assert "credentials" not in item
    ec2 = stack.client("ec2")
    reservations = ec2.describe_instances()["Reservations"]
    for instance in (i for r in reservations for i in r["Instances"]):
        user_data = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
        assert PASSWORD not in str(user_data)
    for path in stack.state_dir.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_ctrl_c_with_a_job_running_leaves_no_process(
    tmp_path: Path, source: LocalPostgres, target: LocalPostgres, held_lock: None
) -> None:
    with running_stack(tmp_path / "state") as local:
        job_id = blocked_job(local, source, target)
        instance_id = local.item(job_id)["instance_id"]
        assert instance_processes(instance_id, None)
        local.process.send_signal(signal.SIGINT)
        assert local.process.wait(timeout=60) == 0
    # running_stack checked on the way out that moto and the worker's tree are gone.
    assert not instance_processes(instance_id, None)
