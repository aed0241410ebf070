"""The fast provisioning in a moto server, and what the drivers read back from it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobs.states import JobStatus
from local_cloud.event_filter import matches as change_rules_select
from local_cloud.moto_server import MOTO_CONFIG, MotoServer
from local_cloud.provision import api_route_keys, launcher_filter_patterns, local_network, provision_fast
from local_cloud.stack import CLIENTS, StackOptions, module_variables
from local_cloud.stream_poller import pattern_matcher
from local_cloud.wiring import LIVE_ALIAS, Wiring, read_wiring

PROJECT = "seren-local"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MotoServer, dict[str, Any], Wiring]]:
    moto = MotoServer(Path(tmp_path_factory.mktemp("moto")) / "moto.log").start()
    try:
        session = boto3.session.Session(
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        clients = {name: session.client(name, endpoint_url=moto.url) for name in CLIENTS}  # type: ignore[call-overload]
        options = StackOptions(heartbeat_interval=3, max_concurrent_jobs=4, batch_size=7)
        provision_fast(clients, module_variables(options, local_network(clients["ec2"])))
        yield moto, clients, read_wiring(clients, project_name=PROJECT)
    finally:
        moto.stop()


def test_moto_runs_no_function_itself(deployed: tuple[MotoServer, dict[str, Any], Wiring]) -> None:
    moto, _, _ = deployed
    assert moto.config()["lambda"] == MOTO_CONFIG["lambda"]


def test_the_drivers_read_the_functions_from_lambda(
    deployed: tuple[MotoServer, dict[str, Any], Wiring],
) -> None:
    _, _, wiring = deployed
    assert wiring.api.function.handler == "services.api.handler.lambda_handler"
    assert wiring.stream.function.handler == "services.launcher.handler.lambda_handler"
    assert wiring.schedule.function.handler == "services.reaper.handler.lambda_handler"
    # moto records a mapping on an alias as on the version the alias points at.
    assert wiring.api.function.qualifier == wiring.schedule.function.qualifier == LIVE_ALIAS
    assert wiring.stream.function.qualifier in (LIVE_ALIAS, "1")
    for function in wiring.functions.values():
        assert function.environment["POWERTOOLS_SERVICE_NAME"] == function.name.removeprefix(f"{PROJECT}-")
    launcher = wiring.stream.function.environment
    assert (launcher["MAX_CONCURRENT_JOBS"], launcher["HEARTBEAT_INTERVAL_SECONDS"]) == ("4", "3")
    assert launcher["ALLOW_LOOPBACK_HOSTS"] == "true"
    assert launcher["WORKER_SHUTDOWN_IF_NOT_TERMINATED"] == "false"
    assert wiring.api.timeout_seconds > wiring.api.function.timeout_seconds


def test_the_drivers_read_routes_mapping_schedule_and_template(
    deployed: tuple[MotoServer, dict[str, Any], Wiring],
) -> None:
    _, _, wiring = deployed
    assert list(wiring.api.route_keys) == api_route_keys()
    assert wiring.api.payload_format_version == "2.0"
    stream = wiring.stream
    assert sorted(stream.filter_patterns) == sorted(launcher_filter_patterns())
    assert (stream.batch_size, stream.maximum_retry_attempts, stream.bisect_on_error) == (7, 5, True)
    assert stream.report_batch_item_failures and stream.on_failure_arn.endswith(f"{PROJECT}-launcher-dlq")
    assert wiring.schedule.interval_seconds == 60
    assert wiring.launch_template["MetadataOptions"]["HttpTokens"] == "required"


def test_the_deployed_filters_pass_exactly_the_launchers_records(
    deployed: tuple[MotoServer, dict[str, Any], Wiring],
) -> None:
    matches = pattern_matcher(deployed[2].stream.filter_patterns)

    def record(event: str, new: str | None, old: str | None = None) -> dict[str, Any]:
        images = {"NewImage": {"status": {"S": new}}} if new else {"NewImage": {"job_id": {"S": "x"}}}
        if old:
            images["OldImage"] = {"status": {"S": old}}
        return {"eventName": event, "dynamodb": images}

    assert matches(record("INSERT", "pending"))
    assert matches(record("MODIFY", "completed", old="running"))
    assert not matches(record("MODIFY", "completed", old="completed"))
    assert not matches(record("MODIFY", "running", old="provisioning"))
    assert not matches(record("INSERT", None))  # the slot ledger and launch claims


@pytest.mark.parametrize("event", ["INSERT", "MODIFY", "REMOVE"])
def test_the_deployed_filters_select_what_the_change_rules_select(
    deployed: tuple[MotoServer, dict[str, Any], Wiring], event: str
) -> None:
    deployed_filter = pattern_matcher(deployed[2].stream.filter_patterns)
    statuses = [None, *(s.value for s in JobStatus)]
    for old in statuses:
        for new in statuses:
            record: dict[str, Any] = {
                "eventName": event,
                "dynamodb": {"Keys": {"job_id": {"S": "j"}}, "NewImage": {"job_id": {"S": "j"}}},
            }
            if new is not None:
                record["dynamodb"]["NewImage"]["status"] = {"S": new}
            if old is not None:
                record["dynamodb"]["OldImage"] = {"job_id": {"S": "j"}, "status": {"S": old}}
            assert deployed_filter(record) == change_rules_select(record), (event, old, new)


def test_a_mapped_stream_keeps_its_records_for_the_poller(
    deployed: tuple[MotoServer, dict[str, Any], Wiring],
) -> None:
    """moto would deliver records to the mapped function itself and then drop them (and
    fail on binary attributes); in the local cloud they stay for GetRecords."""
    _, clients, wiring = deployed
    table = wiring.api.function.environment["JOBS_TABLE_NAME"]
    clients["dynamodb"].put_item(
        TableName=table,
        Item={"job_id": {"S": "kept"}, "status": {"S": "pending"}, "blob": {"B": b"\x00\x01"}},
    )
    streams = clients["dynamodbstreams"]
    shards = streams.describe_stream(StreamArn=wiring.stream.stream_arn)["StreamDescription"]["Shards"]
    records = []
    for shard in shards:
        iterator = streams.get_shard_iterator(
            StreamArn=wiring.stream.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += streams.get_records(ShardIterator=iterator)["Records"]
    keys = [json.dumps(r["dynamodb"]["Keys"]) for r in records]
    assert any('"kept"' in key for key in keys)
