"""API Lambda figures: cold import time and warm per-request latency (in-process, moto).

    .venv/bin/python bench/api_bench.py [--import-runs 9] [--requests 200]

Cold import: `import services.api.handler` against a bare `import boto3`, and the libraries
the handler needs at import alone, each in fresh interpreters, alternated, median of the
runs. Also the first request after import (what else a cold start pays: clients,
validation models) in the same fresh interpreters.
Warm latency: POST /jobs and GET /jobs/{id} through `lambda_handler` against the bare
moto calls each performs (API-key read, KMS encrypt, the job put and its owner-ledger place
in one transaction; API-key read, job read), alternated so both see the same table, median
per request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the project and its test support

from tests.support.aws_env import FAKE_AWS_ENVIRONMENT  # noqa: E402

ENVIRONMENT = {
    **FAKE_AWS_ENVIRONMENT,
    "JOBS_TABLE_NAME": "bench-jobs",
    "API_KEYS_TABLE_NAME": "bench-keys",
    "KMS_KEY_ID": "set-at-run-time",
    "WORKER_LOG_GROUP": "/bench/workers",
    "MAX_UNFINISHED_JOBS_PER_OWNER": "10000",
    "POWERTOOLS_SERVICE_NAME": "api",
    "POWERTOOLS_METRICS_NAMESPACE": "Bench",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}

IMPORT_PROBE = (
    "import time; t = time.perf_counter(); import {module}; print((time.perf_counter() - t) * 1000)"
)

# What the handler cannot do without at import: boto3, the HTTP resolver with request
# validation (pydantic, Powertools' OpenAPI layer), Logger and Metrics. The handler's own
# modules are what it costs on top of this.
REQUIRED_LIBRARIES = (
    "boto3; from aws_lambda_powertools.event_handler import APIGatewayHttpResolver; "
    "APIGatewayHttpResolver(enable_validation=True); "
    "from aws_lambda_powertools import Logger; Logger(); "
    "from aws_lambda_powertools.metrics import single_metric; "
    "import aws_lambda_powertools.event_handler.openapi.params"
)

# Import the handler, then time its first request against moto (moto is imported and the
# tables made before the clock starts, with boto3 hidden so the handler still imports it).
FIRST_REQUEST_PROBE = """
import json, sys, time
from moto import mock_aws
with mock_aws():
    import boto3
    from local_cloud.resources import create_tables
    create_tables(boto3.client("dynamodb"), jobs_table="bench-jobs", api_keys_table="bench-keys")
    import os
    os.environ["KMS_KEY_ID"] = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    os.environ["REQUEST_MAC_KEY_ID"] = boto3.client("kms").create_key(
        KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    from jobs.api_keys import ApiKeyStore
    key = ApiKeyStore("bench-keys", boto3.resource("dynamodb").Table("bench-keys")).create("bench").key
    from tests.support.api import V1_BODY, http_event
    event = http_event("POST", "/jobs", body=json.dumps(V1_BODY), headers={"x-api-key": key})
    from tests.support.api import FakeContext
    t = time.perf_counter()
    from services.api.handler import lambda_handler
    t_import = time.perf_counter()
    answer = lambda_handler(event, FakeContext())
    t_first = time.perf_counter()
    assert answer["statusCode"] == 201, answer
    print(json.dumps({"import_ms": (t_import - t) * 1000, "first_ms": (t_first - t_import) * 1000}))
"""


def _fresh(code: str) -> str:
    env = {
        **os.environ,
        **ENVIRONMENT,
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    return result.stdout.strip().splitlines()[-1]


def cold_import(runs: int) -> dict[str, float]:
    boto3_ms, libraries_ms, handler_ms, first_ms = [], [], [], []
    for _ in range(runs):
        boto3_ms.append(float(_fresh(IMPORT_PROBE.format(module="boto3"))))
        libraries_ms.append(float(_fresh(IMPORT_PROBE.format(module=REQUIRED_LIBRARIES))))
        handler_ms.append(float(_fresh(IMPORT_PROBE.format(module="services.api.handler"))))
        first_ms.append(json.loads(_fresh(FIRST_REQUEST_PROBE))["first_ms"])
    return {
        "boto3": statistics.median(boto3_ms),
        "libraries": statistics.median(libraries_ms),
        "handler": statistics.median(handler_ms),
        "first_request": statistics.median(first_ms),
    }


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def warm_latency(requests: int) -> dict[str, float]:
    os.environ.update(ENVIRONMENT)
    from moto import mock_aws

    with mock_aws():
        import boto3

        from jobs import aws
        from local_cloud.resources import create_tables

        create_tables(boto3.client("dynamodb"), jobs_table="bench-jobs", api_keys_table="bench-keys")
        os.environ["KMS_KEY_ID"] = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
        os.environ["REQUEST_MAC_KEY_ID"] = boto3.client("kms").create_key(
            KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC"
        )["KeyMetadata"]["KeyId"]
        from jobs.api_keys import ApiKeyStore, hash_key
        from jobs.owners import take_place
        from services.api.handler import lambda_handler
        from tests.support.api import V1_BODY, FakeContext, http_event

        key = ApiKeyStore("bench-keys").create("bench").key
        body = json.dumps(V1_BODY)
        context = FakeContext()
        jobs_table, keys_table, kms = aws.table("bench-jobs"), aws.table("bench-keys"), aws.client("kms")
        job_ids: list[str] = []

        def api_post() -> None:
            answer = lambda_handler(
                http_event("POST", "/jobs", body=body, headers={"x-api-key": key}), context
            )
            job_ids.append(json.loads(answer["body"])["job_id"])

        def bare_post() -> None:
            # The same calls on an item of the same shape as the API writes (moto's cost
            # grows with item size), for another owner so both ledgers hold as many jobs.
            keys_table.get_item(Key={"key_hash": hash_key(key)}, ConsistentRead=True)
            job_id = str(uuid.uuid4())
            blob = kms.encrypt(
                KeyId=os.environ["KMS_KEY_ID"],
                Plaintext=json.dumps(
                    {"source_url": V1_BODY["source_url"], "target_url": V1_BODY["target_url"]}
                ).encode(),
                EncryptionContext={"job_id": job_id, "purpose": "replication-job-credentials"},
            )["CiphertextBlob"]
            item = {**template[0], "job_id": job_id, "owner": "bench-bare", "credentials": blob}
            put = {
                "TableName": "bench-jobs",
                "Item": item,
                "ConditionExpression": "attribute_not_exists(job_id)",
            }
            jobs_table.meta.client.transact_write_items(
                TransactItems=[{"Put": put}, take_place("bench-jobs", "bench-bare", job_id, 10_000)]
            )

        def api_get() -> None:
            job_id = job_ids[len(job_ids) // 2]
            lambda_handler(http_event("GET", f"/jobs/{job_id}", headers={"x-api-key": key}), context)

        def bare_get() -> None:
            keys_table.get_item(Key={"key_hash": hash_key(key)}, ConsistentRead=True)
            jobs_table.get_item(Key={"job_id": job_ids[len(job_ids) // 2]}, ConsistentRead=True)

        api_post()
        template = [jobs_table.get_item(Key={"job_id": job_ids[0]})["Item"]]
        figures: dict[str, float] = {}
        for name, api, bare in (("post", api_post, bare_post), ("get", api_get, bare_get)):
            for _ in range(10):  # warm both paths
                api()
                bare()
            api_times, bare_times = _alternate(api, bare, requests)
            figures[f"{name}_api"] = _median_ms(api_times)
            figures[f"{name}_bare"] = _median_ms(bare_times)
        return figures


def _alternate(
    first: Callable[[], Any], second: Callable[[], Any], rounds: int
) -> tuple[list[float], list[float]]:
    first_times: list[float] = []
    second_times: list[float] = []
    for _ in range(rounds):
        for call, times in ((first, first_times), (second, second_times)):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return first_times, second_times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--import-runs", type=int, default=9)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    cold = cold_import(args.import_runs)
    warm = warm_latency(args.requests)
    rows = [
        ("cold import services.api.handler", cold["handler"], cold["boto3"], "bare import boto3", 1.5),
        ("cold import, required libraries only", cold["libraries"], cold["boto3"], "bare import boto3", None),
        ("first POST /jobs after import", cold["first_request"], None, "", None),
        ("warm POST /jobs", warm["post_api"], warm["post_bare"], "its bare moto calls", 2.0),
        ("warm GET /jobs/{id}", warm["get_api"], warm["get_bare"], "its bare moto calls", None),
    ]
    runs = f"{args.import_runs} fresh interpreters, {args.requests} requests each"
    print(f"python {sys.version.split()[0]}, {runs}")
    print(f"{'measure':<36}{'ms':>9}{'baseline ms':>13}  {'ratio':>6}  {'target':>7}  baseline")
    for name, value, base, base_name, target in rows:
        ratio = f"{value / base:.2f}x" if base else ""
        print(
            f"{name:<36}{value:>9.1f}{(f'{base:.1f}' if base else ''):>13}  {ratio:>6}  "
            f"{(f'<{target}x' if target else ''):>7}  {base_name}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
