"""Reaper run time and items read against the size of the jobs table's history.

For each size: a fresh jobs table on in-process moto with N finished jobs (written with
batch_writer) and A running jobs with their instances and fresh heartbeats, then R reaper
passes; prints the median pass time, the items DynamoDB returned to reads (counted at the
client), the number of read calls, and the part of the pass spent inside moto's Query (moto
walks the whole table for a GSI query, DynamoDB reads only the matching index entries: the
pass time minus that walk is the reaper's own cost). Targets: items read <= active + 10 at every size;
run time at the largest size within 1.2x of the smallest.

    .venv/bin/python bench/reaper_bench.py --sizes 1000,10000,50000 --active 10 --runs 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the project and its test support

from tests.support.aws_env import FAKE_AWS_ENVIRONMENT, MACHINE_VARIABLES  # noqa: E402

ENVIRONMENT = {
    **FAKE_AWS_ENVIRONMENT,
    "WORKER_LOG_GROUP": "/bench/workers",
    "POWERTOOLS_SERVICE_NAME": "reaper-bench",
    "POWERTOOLS_METRICS_NAMESPACE": "ReaperBench",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000", help="finished jobs per table, comma list")
    parser.add_argument("--active", type=int, default=10, help="running jobs per table")
    parser.add_argument("--runs", type=int, default=7, help="reaper passes per size (median reported)")
    args = parser.parse_args()
    os.environ.update(ENVIRONMENT)
    for name in MACHINE_VARIABLES:
        os.environ.pop(name, None)

    from moto import mock_aws

    sizes = [int(size) for size in args.sizes.split(",")]
    with mock_aws():
        template, subnets = _ec2_setup()
        moto_query_seconds = _time_moto_queries()
        rows = [
            _measure(size, args.active, args.runs, template, subnets, moto_query_seconds) for size in sizes
        ]
    _print(rows, args.active)


def _ec2_setup() -> tuple[str, list[str]]:
    import boto3

    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    template = ec2.create_launch_template(
        LaunchTemplateName="bench-worker", LaunchTemplateData={"ImageId": image}
    )["LaunchTemplate"]["LaunchTemplateId"]
    return template, [subnet]


def _measure(
    finished: int, active: int, runs: int, template: str, subnets: list[str], moto_query_seconds: list[float]
) -> dict[str, Any]:
    import boto3

    from control_plane.context import ControlPlane
    from control_plane.telemetry import metrics
    from jobs import aws, clock, instances
    from jobs.dynamo_values import to_dynamo
    from jobs.record import Job
    from jobs.states import JobStatus
    from local_cloud.resources import create_tables
    from services.reaper.logic import reap
    from services.reaper.settings import Settings

    table_name = f"bench-jobs-{uuid.uuid4().hex[:8]}"
    create_tables(boto3.client("dynamodb"), jobs_table=table_name, api_keys_table=f"{table_name}-keys")
    settings = Settings.from_environment(
        jobs_table_name=table_name, launch_template_id=template, subnet_ids=",".join(subnets)
    )
    ctx = ControlPlane.on_aws(settings)
    table = aws.table(table_name)
    from tests.support.jobs import new_job

    now = clock.now_iso()

    def job(status: JobStatus, **fields: Any) -> Job:
        return new_job(status, owner="bench", attempt=1, **fields)

    started = time.perf_counter()
    with table.batch_writer() as writer:
        for n in range(finished):
            ended = job(JobStatus.COMPLETED if n % 4 else JobStatus.FAILED, completed_at=now)
            writer.put_item(Item=to_dynamo(ended.to_item()))
    load_seconds = time.perf_counter() - started
    for _ in range(active):
        job_id = str(uuid.uuid4())
        request = instances.LaunchRequest(
            job_id=job_id,
            attempt=1,
            project=settings.project_tag,
            launch_template_id=template,
            launch_template_version="$Latest",
            instance_types=["t3.medium"],
            subnet_ids=subnets,
            user_data="#!/bin/bash\n",
        )
        instance_id = ctx.fleet.launch(request).instance_id
        running = job(JobStatus.RUNNING, started_at=now, instance_id=instance_id).model_copy(
            update={"job_id": job_id}
        )
        table.put_item(Item=to_dynamo(running.to_item()))
        ctx.slots.acquire(job_id, 100)

    reads = {"items": 0, "calls": 0, "scans": 0}

    def count(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in ("Query", "Scan", "GetItem", "BatchGetItem"):
            reads["calls"] += 1
        if model.name in ("Query", "Scan"):
            reads["items"] += int(parsed.get("ScannedCount", parsed.get("Count", 0)))
            reads["scans"] += model.name == "Scan"
        elif model.name == "GetItem" and parsed.get("Item"):
            reads["items"] += 1

    events = table.meta.client.meta.events
    events.register("after-call.dynamodb", count)
    pass_times, query_times = [], []
    try:
        for _ in range(runs):
            # Heartbeats stay fresh: the passes find nothing to do, as on a healthy system.
            moto_query_seconds[0] = 0.0
            started = time.perf_counter()
            report = reap(ctx, settings)
            pass_times.append(time.perf_counter() - started)
            metrics.clear_metrics()
            assert report.actions == [], report.actions
            query_times.append(moto_query_seconds[0])
    finally:
        events.unregister("after-call.dynamodb", count)
    per_pass_items = reads["items"] // runs
    return {
        "finished": finished,
        "active": active,
        "load_s": load_seconds,
        "pass_ms": statistics.median(pass_times) * 1000,
        "query_ms": statistics.median(query_times) * 1000,
        "net_ms": statistics.median(p - q for p, q in zip(pass_times, query_times, strict=True)) * 1000,
        "items_read": per_pass_items,
        "report_items": report.items_read,
        "read_calls": reads["calls"] // runs,
        "scans": reads["scans"],
    }


def _time_moto_queries() -> list[float]:
    """Install a timer around moto's Query; returns the accumulator (seconds).

    moto answers a GSI query by walking every item of the table, where DynamoDB reads only
    the index entries that match: the pass time minus this is the reaper's own cost, which
    is what a pass on DynamoDB follows."""
    from moto.dynamodb.models import DynamoDBBackend

    spent = [0.0]
    original = DynamoDBBackend.query

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    DynamoDBBackend.query = timed  # type: ignore[method-assign]
    return spent


def _print(rows: list[dict[str, Any]], active: int) -> None:
    header = (
        f"{'finished jobs':>13} | {'active':>6} | {'items read':>10} | {'read calls':>10} | {'scans':>5} | "
        f"{'pass ms':>8} | {'in moto Query ms':>16} | {'reaper own ms':>13}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['finished']:>13} | {row['active']:>6} | {row['items_read']:>10} | "
            f"{row['read_calls']:>10} | {row['scans']:>5} | {row['pass_ms']:>8.1f} | "
            f"{row['query_ms']:>16.1f} | {row['net_ms']:>13.1f}"
        )
    first, last = rows[0], rows[-1]
    items_ok = all(row["items_read"] <= active + 10 for row in rows)
    print(f"\nitems read <= active + 10 at every size: {'met' if items_ok else 'MISSED'}")
    for label, key in (("pass time", "pass_ms"), ("reaper's own time (pass minus moto's Query)", "net_ms")):
        ratio = last[key] / first[key]
        verdict = "met" if ratio <= 1.2 else "MISSED"
        print(
            f"{label} at {last['finished']} vs {first['finished']}: {ratio:.2f}x (target <= 1.2x: {verdict})"
        )


if __name__ == "__main__":
    main()
