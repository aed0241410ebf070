"""End-to-end figures of the local stack: job latencies, API latency under load, idle cost.

    .venv/bin/python bench/e2e_bench.py [--jobs 20] [--requests 3000] [--concurrency 4]

- submit -> running: the job's `started_at` minus its `created_at` (both written on this
  machine), over `--jobs` jobs run one after another (no queueing in the figure);
- completed -> instance terminated: from `completed_at` until EC2 (moto) reports the
  instance `terminated`, polled every 10 ms;
- API latency: `GET /jobs/{id}` and `GET /jobs` over keep-alive loopback connections from
  `--concurrency` threads;
- idle: CPU of the stack, moto and every child over 20 s with no job, and their total RSS.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the project and its test support

import psycopg  # noqa: E402

from local_cloud.postgres import LocalPostgres, start_postgres  # noqa: E402
from tests.support.e2e import RunningStack, running_stack, wait_for  # noqa: E402

CLOCK_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class JobTimes:
    """One job's way through the service, in seconds."""

    to_launched: float  # submit -> the launcher's RunInstances (created_at -> launched_at)
    to_running: float  # submit -> the worker's `running` write (created_at -> started_at)
    engine_run: float  # running -> completed
    to_terminated: float  # completed -> EC2 reports the instance `terminated`


def create_bench_database(server: LocalPostgres) -> None:
    """What every bench job verifies: one database `bench` with a table of 1,000 rows."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    with psycopg.connect(server.url("bench")) as conn:
        conn.execute("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g")


def run_one_job(stack: RunningStack, url: str) -> JobTimes:
    """A small `verify` of the bench database, followed until its instance is gone."""
    job_id = stack.submit("verify", url, url, filter={"include_databases": ["bench"]})
    job, _ = stack.follow(job_id, timeout=120)
    assert job["status"] == "completed", job
    item = stack.item(job_id)
    instance_id = item["instance_id"]
    ec2 = stack.client("ec2")

    def terminated() -> bool:
        answer = ec2.describe_instances(InstanceIds=[instance_id])
        return bool(answer["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated")

    wait_for(terminated, 30, "instance terminated", interval=0.01)
    gone = time.time()
    stack.wait_no_processes(instance_id)
    created, completed = epoch(job["created_at"]), epoch(job["completed_at"])
    return JobTimes(
        to_launched=epoch(item["launched_at"]) - created,
        to_running=epoch(job["started_at"]) - created,
        engine_run=completed - epoch(job["started_at"]),
        to_terminated=gone - completed,
    )


def job_latencies(stack: RunningStack, url: str, jobs: int) -> tuple[list[float], list[float], list[float]]:
    times = [run_one_job(stack, url) for _ in range(jobs)]
    return (
        [one.to_running for one in times],
        [one.to_launched for one in times],
        [one.to_terminated for one in times],
    )


def api_latencies(stack: RunningStack, job_id: str, requests: int, concurrency: int) -> list[float]:
    host, port = stack.url.removeprefix("http://").split(":")
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = requests // concurrency

    def run() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        mine = []
        for index in range(per_thread):
            path = "/jobs?limit=5" if index % 10 == 0 else f"/jobs/{job_id}"
            started = time.perf_counter()
            connection.request("GET", path, headers={"x-api-key": stack.key})
            answer = connection.getresponse()
            answer.read()
            mine.append(time.perf_counter() - started)
            assert answer.status == 200, answer.status
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            continue
    return total / CLOCK_TICKS


def rss_megabytes(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def idle_cost(stack: RunningStack, seconds: float) -> tuple[float, float]:
    pids = process_tree(stack.process.pid)
    before, started = cpu_seconds(pids), time.monotonic()
    time.sleep(seconds)
    used = cpu_seconds(pids) - before
    return 100 * used / (time.monotonic() - started), rss_megabytes(process_tree(stack.process.pid))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--idle-seconds", type=float, default=20)
    args = parser.parse_args()

    results: list[tuple[str, float, str, bool]] = []
    with (
        start_postgres(password="bench-pw-not-secret") as server,
        TemporaryDirectory(prefix="e2e-bench-") as tmp,
        running_stack(Path(tmp) / "state", settings=()) as stack,  # the laptop defaults of `local up`
    ):
        create_bench_database(server)
        idle_cpu, idle_rss = idle_cost(stack, args.idle_seconds)
        to_running, to_launched, to_terminated = job_latencies(stack, server.url(), args.jobs)
        _, listing = stack.api("GET", "/jobs?limit=1")
        job_id = listing["jobs"][0]["job_id"]
        serial = api_latencies(stack, job_id, args.requests, 1)
        parallel = api_latencies(stack, job_id, args.requests, args.concurrency)

        ms = 1000.0
        results += [
            ("submit -> running p50 (ms)", percentile(to_running, 0.5) * ms, "", True),
            (
                "submit -> running p95 (ms)",
                percentile(to_running, 0.95) * ms,
                "< 1000",
                percentile(to_running, 0.95) < 1.0,
            ),
            ("completed -> terminated p50 (ms)", percentile(to_terminated, 0.5) * ms, "", True),
            (
                "completed -> terminated p95 (ms)",
                percentile(to_terminated, 0.95) * ms,
                "< 3000",
                percentile(to_terminated, 0.95) < 3.0,
            ),
        ]
        for label, api in (("1 client", serial), (f"{args.concurrency} clients", parallel)):
            results += [
                (f"API p50 (ms, {len(api)} requests, {label})", percentile(api, 0.5) * ms, "", True),
                (f"API p99 (ms, {label})", percentile(api, 0.99) * ms, "< 50", percentile(api, 0.99) < 0.05),
            ]
        results += [
            ("idle CPU (% of one core)", idle_cpu, "< 5", idle_cpu < 5),
            ("RSS of the stack, moto and children (MB)", idle_rss, "< 500", idle_rss < 500),
        ]
        results.append(("mean submit -> running (ms)", statistics.mean(to_running) * ms, "", True))
        # Where submit -> running goes: the API, stream and launcher, then boot and worker start.
        results.append(
            ("  of which submit -> launched p50 (ms)", percentile(to_launched, 0.5) * ms, "", True)
        )
    width = max(len(name) for name, *_ in results)
    for name, value, target, met in results:
        verdict = "" if not target else ("met" if met else "MISSED")
        print(f"{name:<{width}}  {value:9.1f}  {target:>7}  {verdict}")
    print(json.dumps({name: round(value, 1) for name, value, *_ in results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
