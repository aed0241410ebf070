"""The worker as on an instance (worker.sh, a subprocess) against moto, with the pg engine
copying between real PostgreSQL servers: the happy path and every fault."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from stack import (
    METRICS_NAMESPACE,
    Cloud,
    Fault,
    WorkerRun,
    alive,
    cmdline,
    descendants,
    environ,
    metadata_server,
    start_worker,
    watch,
    worker_env,
)
from worker_helpers import SOURCE_DATABASE, SOURCE_PASSWORD, TARGET_PASSWORD, locked_orders

from jobs import aws
from jobs.record import CREDENTIALS_ATTRIBUTE
from jobs.spec import JobFilter, JobOptions
from jobs.states import JobStatus
from local_cloud.postgres import LocalPostgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SHOP_ONLY = JobFilter(include_databases=[SOURCE_DATABASE])
NO_SYNC = JobOptions(enable_sync=False)


def raw_item(job_id: str) -> dict[str, object]:
    return dict(aws.table("worker-test-jobs").get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"])


def count_rows(server: LocalPostgres, table: str) -> int:
    with psycopg.connect(server.url(SOURCE_DATABASE)) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - test constant
        assert row is not None
        return int(row[0])


def arrange(cloud: Cloud, source: LocalPostgres, target: LocalPostgres) -> tuple[str, str]:
    return cloud.arrange_job(
        source.url(SOURCE_DATABASE), target.url("postgres"), job_filter=SHOP_ONLY, options=NO_SYNC
    )


def wait_running_with_engine(cloud: Cloud, job_id: str, run: WorkerRun) -> None:
    for _ in watch(cloud.store, job_id, lambda job: job.status is JobStatus.RUNNING):
        pass
    deadline = time.monotonic() + 20
    while not run.engine_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.engine_pids(), "the engine did not start"


def assert_no_password(texts: list[str]) -> None:
    for text in texts:
        assert SOURCE_PASSWORD not in text
        assert TARGET_PASSWORD not in text


def assert_cleaned_up(cloud: Cloud, job_id: str, instance_id: str) -> None:
    assert CREDENTIALS_ATTRIBUTE not in raw_item(job_id)
    assert cloud.instance_state(instance_id) in ("shutting-down", "terminated")


def test_the_worker_ends_its_own_instance_after_its_last_write_without_waiting_for_worker_sh(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    job_id, instance_id = arrange(cloud, source, target)
    imds = metadata_server(instance_id)
    try:
        # `python -m worker` alone: worker.sh's own terminate step never runs here.
        done = subprocess.run(
            [sys.executable, "-m", "worker", job_id],
            env=worker_env(cloud, imds, tmp_path / "local-logs"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        imds.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert cloud.store.get(job_id).status is JobStatus.COMPLETED  # type: ignore[union-attr]
    assert_cleaned_up(cloud, job_id, instance_id)


def test_init_runs_to_completed_with_heartbeats_progress_logs_and_cleanup(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    job_id, instance_id = arrange(cloud, source, target)
    assert cloud.store.get(job_id).status is JobStatus.PROVISIONING  # type: ignore[union-attr]
    with locked_orders(source, release_after=2.5):  # long enough to see several heartbeats
        run = start_worker(cloud, job_id, instance_id, tmp_path)
        seen = list(watch(cloud.store, job_id, lambda job: job.status.is_terminal, timeout=90))
        assert run.wait() == 0, run.output()

    final = seen[-1]
    assert final.status is JobStatus.COMPLETED, (final.error, run.output())
    assert final.exit_code == 0
    running = [job for job in seen if job.status is JobStatus.RUNNING]
    assert running, "running was never observed"
    assert final.started_at is not None and final.completed_at is not None
    assert len({job.heartbeat_at for job in running}) >= 3, "heartbeats did not advance while running"
    assert len({job.progress.message for job in seen}) >= 3, "progress did not move"
    # Where the logs are is the API's to say (from the job id), not the worker's to write.
    item = raw_item(job_id)
    assert not {"log_group", "log_stream", "log_url"} & set(item)

    assert count_rows(target, "orders") == count_rows(source, "orders") == 5000
    assert count_rows(target, "customers") == 1000

    assert_cleaned_up(cloud, job_id, instance_id)
    lines = cloud.log_lines(job_id)
    assert any("starting the pg engine" in line for line in lines)
    assert any("job completed" in line for line in lines)
    assert_no_password(lines)
    local_log = (tmp_path / "local-logs" / f"{job_id}.log").read_text()
    assert "job completed" in local_log
    assert_no_password([local_log, run.output(), final.model_dump_json()])
    names = aws.client("cloudwatch").list_metrics(Namespace=METRICS_NAMESPACE)["Metrics"]
    assert {"JobDuration", "JobOutcome"} <= {metric["MetricName"] for metric in names}


def test_engine_processes_hold_no_password_in_their_command_lines_or_environments(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    """worker.sh, the worker and the engine (its client tools: tests/engines)."""
    job_id, instance_id = arrange(cloud, source, target)
    with locked_orders(source):
        run = start_worker(cloud, job_id, instance_id, tmp_path)
        wait_running_with_engine(cloud, job_id, run)
        time.sleep(1.0)  # let the engine start its client tools (they block on the lock too)
        tree = [run.pid, *descendants(run.pid)]
        lines = {pid: cmdline(pid) for pid in tree}
        environments = {pid: environ(pid) for pid in tree}
        # A client tool that ended between the listing and the read has nothing left to leak.
        environments = {pid: text for pid, text in environments.items() if text or alive(pid)}
        assert run.pid in environments
        assert any("worker.engines.pg" in line for line in lines.values())
        assert any(" -m worker " in f"{line} " for line in lines.values())
        assert all(environments.values()), "an environment could not be read"
        for pid in tree:
            for text in (lines[pid], environments.get(pid, "")):
                assert SOURCE_PASSWORD not in text, pid
                assert TARGET_PASSWORD not in text, pid
                assert "postgresql://" not in text, pid
        cloud.store.transition(job_id, [JobStatus.RUNNING], JobStatus.CANCELLING)
        assert run.wait() == 0, run.output()


def test_cancel_stops_the_engine_and_ends_cancelled(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    job_id, instance_id = arrange(cloud, source, target)
    with locked_orders(source):
        run = start_worker(cloud, job_id, instance_id, tmp_path)
        wait_running_with_engine(cloud, job_id, run)
        engine_tree = [pid for engine in run.engine_pids() for pid in [engine, *descendants(engine)]]
        assert cloud.store.transition(job_id, [JobStatus.RUNNING], JobStatus.CANCELLING).ok
        assert run.wait(60) == 0, run.output()
    final = cloud.store.get(job_id)
    assert final is not None and final.status is JobStatus.CANCELLED, run.output()
    assert not [pid for pid in engine_tree if os.path.exists(f"/proc/{pid}") and cmdline(pid)]
    assert_cleaned_up(cloud, job_id, instance_id)
    assert any("stopping the engine" in line for line in cloud.log_lines(job_id))


def test_deadline_stops_the_engine_and_ends_timeout(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    job_id, instance_id = arrange(cloud, source, target)
    with locked_orders(source):
        run = start_worker(cloud, job_id, instance_id, tmp_path, MAX_JOB_RUNTIME_SECONDS="3")
        assert run.wait(60) == 0, run.output()
    final = cloud.store.get(job_id)
    assert final is not None and final.status is JobStatus.TIMEOUT, run.output()
    assert final.error and "limit of 3 seconds" in final.error
    assert_cleaned_up(cloud, job_id, instance_id)


def assert_handed_back(cloud: Cloud, job_id: str, instance_id: str, reason: str) -> None:
    """The attempt ended without an outcome: the job waits for its next attempt, with the
    reason recorded, its credentials kept for it, and this instance gone."""
    final = cloud.store.get(job_id)
    assert final is not None and final.status is JobStatus.PROVISIONING
    assert final.instance_id is None and final.error is None
    assert [(lost.attempt, lost.instance_id) for lost in final.lost_attempts] == [(1, instance_id)]
    assert reason in final.lost_attempts[0].reason
    assert CREDENTIALS_ATTRIBUTE in raw_item(job_id)
    assert cloud.instance_state(instance_id) in ("shutting-down", "terminated")
    assert any("handed back" in line for line in cloud.log_lines(job_id))


def test_sigterm_to_the_worker_hands_the_job_back(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    job_id, instance_id = arrange(cloud, source, target)
    with locked_orders(source):
        run = start_worker(cloud, job_id, instance_id, tmp_path)
        wait_running_with_engine(cloud, job_id, run)
        engines = run.engine_pids()
        run.signal(signal.SIGTERM)  # to worker.sh, which passes it on
        assert run.wait(60) == 0, run.output()
    assert not [pid for pid in engines if cmdline(pid)]
    assert_handed_back(cloud, job_id, instance_id, "SIGTERM")


def test_a_shutdown_that_stops_the_engine_before_the_worker_hands_the_job_back(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    """A shutdown sends SIGTERM to every process of the instance at once (systemd stops the
    unit's whole control group; the local EC2 driver does the same). Here the engine's
    arrives first and the engine is gone before the worker's own SIGTERM: still a hand-back,
    not an engine failure."""
    job_id, instance_id = arrange(cloud, source, target)
    with locked_orders(source):
        run = start_worker(cloud, job_id, instance_id, tmp_path)
        wait_running_with_engine(cloud, job_id, run)
        engines = run.engine_pids()
        workers = [pid for pid in descendants(run.pid) if pid not in engines]
        for pid in engines:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in engines) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(alive(pid) for pid in engines), "the engine did not stop on SIGTERM"
        for pid in [run.pid, *workers]:
            os.kill(pid, signal.SIGTERM)
        assert run.wait(60) == 0, run.output()
    assert_handed_back(cloud, job_id, instance_id, "SIGTERM")


def test_a_target_database_is_created_only_once_the_item_records_its_copy_start(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    """A loss right after CREATE DATABASE must leave a checkpoint saying this job created it
    (else the retry cannot tell it from the user's): while the item refuses the "copying"
    checkpoint, the engine waits."""
    job_id, instance_id = arrange(cloud, source, target)
    refused = Fault("UpdateItem", body_contains=('"checkpoint"', '"copying"', job_id))
    cloud.faults().append(refused)
    run = start_worker(cloud, job_id, instance_id, tmp_path)
    deadline = time.monotonic() + 30
    while refused.hits < 6 and time.monotonic() < deadline:  # two saves, each retried by botocore
        time.sleep(0.05)
    assert refused.hits >= 6, run.output()
    assert not database_exists(target, SOURCE_DATABASE)
    assert cloud.store.get(job_id).checkpoint == {}  # type: ignore[union-attr]
    cloud.faults().remove(refused)
    assert run.wait(90) == 0, run.output()
    final = cloud.store.get(job_id)
    assert final is not None and final.status is JobStatus.COMPLETED, run.output()
    assert final.checkpoint[SOURCE_DATABASE].created  # "done" may come too late to be recorded
    assert count_rows(target, "orders") == count_rows(source, "orders")


def database_exists(server: LocalPostgres, database: str) -> bool:
    with psycopg.connect(server.url()) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
    return found is not None


def test_a_spot_interruption_notice_hands_the_job_back_in_seconds(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    job_id, instance_id = arrange(cloud, source, target)
    with locked_orders(source):
        run = start_worker(cloud, job_id, instance_id, tmp_path, SPOT_NOTICE_POLL_SECONDS="0.5")
        wait_running_with_engine(cloud, job_id, run)
        engines = run.engine_pids()
        noticed = time.monotonic()
        run.imds.announce_interruption("2026-01-01T00:02:00Z")
        assert run.wait(60) == 0, run.output()
        handed_back_within = time.monotonic() - noticed
    assert not [pid for pid in engines if cmdline(pid)]
    assert_handed_back(
        cloud, job_id, instance_id, "Spot interruption notice: terminate at 2026-01-01T00:02:00Z"
    )
    assert handed_back_within < 60  # the notice gives two minutes


# SIGTERM to the engine alone (the instance stays up, the worker gets none): an engine failure.
@pytest.mark.parametrize(("signum", "error"), [(signal.SIGKILL, "signal 9"), (signal.SIGTERM, "pg engine")])
def test_engine_crash_ends_failed_with_exit_code_and_summary(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path, signum: int, error: str
) -> None:
    job_id, instance_id = arrange(cloud, source, target)
    with locked_orders(source):
        run = start_worker(cloud, job_id, instance_id, tmp_path)
        wait_running_with_engine(cloud, job_id, run)
        for pid in run.engine_pids():
            os.kill(pid, signum)
        assert run.wait(60) == 0, run.output()
    final = cloud.store.get(job_id)
    assert final is not None and final.status is JobStatus.FAILED, run.output()
    assert final.exit_code == 128 + signum and final.lost_attempts == []
    assert final.error and error in final.error
    assert_cleaned_up(cloud, job_id, instance_id)


def test_engine_failure_ends_failed_with_redacted_error_lines(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    # The target refuses the password: the engine fails on its own, quoting its connection error.
    wrong_target = target.url("postgres").replace(TARGET_PASSWORD, "s3cret-test-pw-wrong")
    job_id, instance_id = cloud.arrange_job(
        source.url(SOURCE_DATABASE), wrong_target, job_filter=SHOP_ONLY, options=NO_SYNC
    )
    run = start_worker(cloud, job_id, instance_id, tmp_path)
    assert run.wait(60) == 0, run.output()
    final = cloud.store.get(job_id)
    assert final is not None and final.status is JobStatus.FAILED, run.output()
    assert final.exit_code == 1
    assert final.error and "password authentication failed" in final.error
    assert "s3cret-test-pw-wrong" not in final.error
    assert_no_password([final.error, *cloud.log_lines(job_id)])
    assert not any("s3cret-test-pw-wrong" in line for line in cloud.log_lines(job_id))
    assert_cleaned_up(cloud, job_id, instance_id)


def test_throttled_heartbeats_are_retried_and_the_job_completes(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    job_id, instance_id = arrange(cloud, source, target)
    throttle = Fault("UpdateItem", body_contains=('"beat"', job_id), times=5)
    with locked_orders(source):
        run = start_worker(cloud, job_id, instance_id, tmp_path)
        wait_running_with_engine(cloud, job_id, run)
        cloud.faults().append(throttle)
        deadline = time.monotonic() + 30
        while throttle.hits < throttle.times and time.monotonic() < deadline:  # type: ignore[operator]
            time.sleep(0.05)
        assert throttle.hits == 5
        throttled_beat = cloud.store.get(job_id).heartbeat_at  # type: ignore[union-attr]
        for _ in watch(cloud.store, job_id, lambda job: job.heartbeat_at != throttled_beat):
            pass  # heartbeats land again once DynamoDB answers
    seen = list(watch(cloud.store, job_id, lambda job: job.status.is_terminal, timeout=90))
    assert run.wait() == 0, run.output()
    final = seen[-1]
    assert final.status is JobStatus.COMPLETED, (final.error, run.output())
    assert "heartbeat failed" in run.output()
    assert_cleaned_up(cloud, job_id, instance_id)


def test_final_write_failing_still_terminates_the_instance(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    job_id, instance_id = arrange(cloud, source, target)
    broken = Fault(
        "UpdateItem", body_contains=('"completed"', job_id), status=500, error="InternalServerError"
    )
    cloud.faults().append(broken)
    run = start_worker(cloud, job_id, instance_id, tmp_path)
    assert run.wait(90) == 0, run.output()
    assert broken.hits >= 3  # every attempt botocore made
    stuck = cloud.store.get(job_id)
    assert stuck is not None and stuck.status is JobStatus.RUNNING  # the reaper's to end now
    assert "outcome not written" in run.output()
    # The credentials go with the control plane's end of the job (a terminal write removes them).
    assert cloud.instance_state(instance_id) in ("shutting-down", "terminated")


@pytest.mark.parametrize("case", ["missing", "terminal", "other instance"])
def test_a_job_that_is_not_ours_is_left_alone_and_the_instance_terminated(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path, case: str
) -> None:
    job_id, instance_id = arrange(cloud, source, target)
    if case == "missing":
        job_id = "00000000-0000-4000-8000-000000000000"
    elif case == "terminal":
        assert cloud.store.transition(job_id, [JobStatus.PROVISIONING], JobStatus.CANCELLED).ok
    else:
        instance_id = cloud.start_instance()
    before = raw_item(job_id) if case != "missing" else None
    run = start_worker(cloud, job_id, instance_id, tmp_path)
    assert run.wait(60) == 0, run.output()
    if before is not None:
        assert raw_item(job_id) == before  # not a single write
    assert cloud.instance_state(instance_id) in ("shutting-down", "terminated")


def test_a_resolved_address_outside_the_policy_fails_the_job_before_running(
    cloud: Cloud, source: LocalPostgres, target: LocalPostgres, tmp_path: Path
) -> None:
    job_id, instance_id = arrange(cloud, source, target)
    run = start_worker(cloud, job_id, instance_id, tmp_path, ALLOW_LOOPBACK_HOSTS="false")
    assert run.wait(60) == 0, run.output()
    final = cloud.store.get(job_id)
    assert final is not None and final.status is JobStatus.FAILED
    assert final.started_at is None
    assert final.error and "loopback addresses are denied" in final.error
    assert_cleaned_up(cloud, job_id, instance_id)
