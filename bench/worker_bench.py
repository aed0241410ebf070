"""The worker's own cost: its peak memory, and its writes to the job's item per job-hour.

    .venv/bin/python bench/worker_bench.py [--size-mb 300] [--tables 24]

Runs the real worker (worker/worker.sh, a subprocess as on an instance) with its default
timing settings (heartbeat 30 s, progress at most every 5 s, 130 writes/hour budget) on a
pg-engine `init` of a generated database, against the local cloud's moto server and IMDS.
Measured there: the worker process's peak RSS (VmHWM, engine children not included), the
engine's, the item writes the worker made and the engine's rate of progress lines.

A job-hour cannot be waited for here, so the writes per job-hour come from the worker's
own write schedule (worker/schedule.py, the code the worker runs) replayed for 8 hours:
once at the progress rate the engine showed, once at a line every 0.25 s (worst case).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script: the project and its test support

from engine_init import DATABASE, generate, mixed_rows

from jobs import aws
from jobs.crypto import CredentialCipher, Credentials
from jobs.job_logs import job_log_group
from jobs.spec import JobFilter, JobOptions
from jobs.states import JobStatus
from jobs.store import JobStore
from jobs.urls import parse_url
from local_cloud.imds import MetadataServer
from local_cloud.moto_server import MotoServer
from local_cloud.postgres import LocalPostgres, start_postgres
from local_cloud.resources import create_tables
from tests.support.aws_env import FAKE_AWS_ENVIRONMENT
from tests.support.jobs import new_job
from worker.schedule import WriteSchedule
from worker.settings import DEFAULT_ITEM_WRITES_PER_HOUR

REPO = Path(__file__).resolve().parents[1]
TABLE = "bench-jobs"
LOG_GROUP = "/bench/workers"
SOURCE_PASSWORD = "s3cret-bench-pw-source"
TARGET_PASSWORD = "s3cret-bench-pw-target"
HEARTBEAT_SECONDS = 30.0
PROGRESS_MIN_SECONDS = 5.0


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def arrange(store: JobStore, key_id: str, source: LocalPostgres, target: LocalPostgres) -> tuple[str, str]:
    job = new_job(
        owner="bench",
        filter=JobFilter(include_databases=[DATABASE]),
        options=JobOptions(enable_sync=False),
        source=parse_url(source.url(DATABASE)).redacted,
        target=parse_url(target.url()).redacted,
    )
    job_id = job.job_id
    ciphertext = CredentialCipher(key_id).encrypt(job_id, Credentials(source.url(DATABASE), target.url()))
    store.create(job, ciphertext, owner_cap=1_000_000)
    image = aws.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance_id = aws.client("ec2").run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    store.transition(
        job_id,
        [JobStatus.PENDING],
        JobStatus.PROVISIONING,
        set_fields={"instance_id": instance_id, "attempt": 1},
    )
    return job_id, instance_id


def replay(seconds: float, progress_every: float) -> int:
    """Writes the worker's schedule makes in `seconds` with new progress every `progress_every` s."""
    plan = WriteSchedule(HEARTBEAT_SECONDS, PROGRESS_MIN_SECONDS, DEFAULT_ITEM_WRITES_PER_HOUR, start=0.0)
    writes, pending, next_progress, now, step = 0, False, 0.0, 0.0, 0.05
    while now < seconds:
        if now >= next_progress:
            pending, next_progress = True, next_progress + progress_every
        if plan.due(now, pending) is not None:
            plan.wrote(now)
            writes, pending = writes + 1, False
        now += step
    return writes


def run_worker(
    work: Path, moto: MotoServer, source: LocalPostgres, target: LocalPostgres
) -> dict[str, float]:
    os.environ.update(FAKE_AWS_ENVIRONMENT, AWS_ENDPOINT_URL=moto.url)
    aws.reset_clients()
    create_tables(aws.client("dynamodb"), jobs_table=TABLE, api_keys_table="bench-api-keys")
    key_id = aws.client("kms").create_key()["KeyMetadata"]["KeyId"]
    store = JobStore(TABLE)
    job_id, instance_id = arrange(store, key_id, source, target)
    aws.client("logs").create_log_group(logGroupName=job_log_group(LOG_GROUP, job_id))  # as the launch does
    imds = MetadataServer(
        instance_id=instance_id, region="us-east-1", instance_type="c5.large", availability_zone="us-east-1a"
    ).start()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "WORKER_PYTHON": sys.executable,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint,
        "JOBS_TABLE_NAME": TABLE,
        "WORKER_LOG_GROUP": LOG_GROUP,
        "ENGINE": "pg",
        "ALLOW_LOOPBACK_HOSTS": "true",
        "LOCAL_LOG_DIR": str(work / "logs"),
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
    }
    out = work / "worker.out"
    started = time.monotonic()
    with out.open("w") as log:
        shell = subprocess.Popen(
            [str(REPO / "worker" / "worker.sh"), job_id], env=env, stdout=log, stderr=log
        )
    peaks = {"worker": 0.0, "engine": 0.0, "terminate": 0.0}
    while shell.poll() is None:
        for pid in children(shell.pid):
            role = "terminate" if "worker.terminate" in cmdline(pid) else "worker"
            peaks[role] = max(peaks[role], peak_rss_mb(pid) or 0.0)
            for engine in children(pid):
                peaks["engine"] = max(peaks["engine"], peak_rss_mb(engine) or 0.0)
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    imds.stop()
    job = store.get(job_id)
    if shell.returncode != 0 or job is None or job.status is not JobStatus.COMPLETED:
        raise SystemExit(f"worker run failed: {job and job.status} {job and job.error}; see {out}")
    finished = [json.loads(line) for line in out.read_text().splitlines() if '"job finished"' in line]
    progress_lines = (work / "logs" / f"{job_id}.log").read_text().count("PROGRESS:")
    return {
        "seconds": elapsed,
        "worker_peak_rss_mb": peaks["worker"],
        "engine_peak_rss_mb": peaks["engine"],
        "terminate_peak_rss_mb": peaks["terminate"],
        "item_writes": float(finished[-1]["item_writes"]),
        "progress_lines": float(progress_lines),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--tables", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="worker-bench-") as tmp:
        work = Path(tmp)
        moto = MotoServer(work / "moto.log").start()
        source = start_postgres(password=SOURCE_PASSWORD)
        target = start_postgres(password=TARGET_PASSWORD)
        try:
            print(f"generating about {args.size_mb} MB in {args.tables} tables ...", flush=True)
            size_bytes = generate(source, mixed_rows(args.size_mb, args.tables))
            run = run_worker(work, moto, source, target)
        finally:
            target.stop()
            source.stop()
            moto.stop()
    progress_every = run["seconds"] / max(run["progress_lines"], 1)
    hours = 8
    measured_rate = replay(hours * 3600, progress_every) / hours
    worst = replay(hours * 3600, 0.25) / hours
    quiet = replay(hours * 3600, hours * 3600 + 1) / hours
    size_mb = size_bytes / 1e6
    print(f"database                        {size_mb:8.0f} MB")
    print(f"worker run (init, pg engine)    {run['seconds']:8.1f} s  ({size_mb / run['seconds']:.1f} MB/s)")
    print(f"worker peak RSS (VmHWM)         {run['worker_peak_rss_mb']:8.1f} MB   target < 100 MB")
    print(f"engine peak RSS (main process)  {run['engine_peak_rss_mb']:8.1f} MB")
    print(
        f"terminate step peak RSS         {run['terminate_peak_rss_mb']:8.1f} MB   (own process, afterwards)"
    )
    print(
        f"item writes in that run         {run['item_writes']:8.0f}  (running, progress, heartbeats, outcome)"
    )
    print(f"engine progress lines           {run['progress_lines']:8.0f}  (one every {progress_every:.2f} s)")
    print(f"writes per job-hour, that rate  {measured_rate:8.1f}   target <= ~130")
    print(f"writes per job-hour, 0.25 s     {worst:8.1f}")
    print(f"writes per job-hour, silent     {quiet:8.1f}")


if __name__ == "__main__":
    main()
