"""The stream poller on its own: moto's stream, a fake launcher, the real filter criteria."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local_cloud.event_filter import matches
from local_cloud.resources import create_tables
from local_cloud.stream_poller import StreamPoller, failed_from

TABLE = "poller-jobs"


@pytest.fixture
def aws(aws_env: None) -> Iterator[dict[str, Any]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_tables(dynamodb, jobs_table=TABLE, api_keys_table="poller-keys")
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="poller-dlq")["QueueUrl"]
        yield {
            "dynamodb": dynamodb,
            "streams": boto3.client("dynamodbstreams"),
            "sqs": sqs,
            "queue": queue,
            "stream_arn": dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"],
        }


def put_job(dynamodb: Any, job_id: str, status: str) -> None:
    dynamodb.put_item(TableName=TABLE, Item={"job_id": {"S": job_id}, "status": {"S": status}})


def set_status(dynamodb: Any, job_id: str, status: str) -> None:
    dynamodb.update_item(
        TableName=TABLE,
        Key={"job_id": {"S": job_id}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": status}},
    )


def make_poller(aws: dict[str, Any], invoke: Any, **kwargs: Any) -> StreamPoller:
    return StreamPoller(
        aws["streams"],
        aws["sqs"],
        stream_arn=aws["stream_arn"],
        invoke=invoke,
        matches=matches,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:launcher",
        dlq_url=aws["queue"],
        retry_delay_seconds=0,
        **kwargs,
    )


def drain(poller: StreamPoller, rounds: int = 20) -> None:
    for _ in range(rounds):
        if not poller.poll_once():
            return


def test_filtered_batches_in_order_with_lambda_shape(aws: dict[str, Any]) -> None:
    batches: list[list[dict[str, Any]]] = []
    poller = make_poller(aws, lambda event: batches.append(event["Records"]), batch_size=2)
    for index in range(3):
        put_job(aws["dynamodb"], f"job-{index}", "pending")
    set_status(aws["dynamodb"], "job-0", "queued")  # active -> active: filtered out
    set_status(aws["dynamodb"], "job-1", "completed")  # active -> terminal: delivered
    put_job(aws["dynamodb"], "control#worker-slots", "x")  # not a pending job: filtered out
    drain(poller)
    delivered = [r["dynamodb"]["Keys"]["job_id"]["S"] + ":" + r["eventName"] for b in batches for r in b]
    assert delivered == ["job-0:INSERT", "job-1:INSERT", "job-2:INSERT", "job-1:MODIFY"]
    assert [len(b) for b in batches] == [2, 2]
    record = batches[0][0]
    assert record["eventSourceARN"] == aws["stream_arn"]
    assert record["eventSource"] == "aws:dynamodb"
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], float)
    json.dumps(batches)  # what Lambda delivers is JSON
    assert poller.stats.records_filtered_out == 2


def test_partial_failure_retries_from_the_failed_record(aws: dict[str, Any]) -> None:
    calls: list[list[str]] = []
    fail_once = {"job-1"}

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        ids = [r["dynamodb"]["Keys"]["job_id"]["S"] for r in event["Records"]]
        calls.append(ids)
        failures = [
            {"itemIdentifier": r["dynamodb"]["SequenceNumber"]}
            for r in event["Records"]
            if r["dynamodb"]["Keys"]["job_id"]["S"] in fail_once
        ]
        fail_once.clear()
        return {"batchItemFailures": failures}

    poller = make_poller(aws, invoke, batch_size=10)
    for index in range(3):
        put_job(aws["dynamodb"], f"job-{index}", "pending")
    drain(poller)
    assert calls == [["job-0", "job-1", "job-2"], ["job-1", "job-2"]]
    assert poller.stats.retries == 1
    assert poller.stats.records_to_dlq == 0


def test_exhausted_retries_go_to_the_dlq_and_reading_moves_on(aws: dict[str, Any]) -> None:
    calls: list[list[str]] = []

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        ids = [r["dynamodb"]["Keys"]["job_id"]["S"] for r in event["Records"]]
        calls.append(ids)
        if "job-0" in ids:
            raise RuntimeError("launcher crashed")
        return {"batchItemFailures": []}

    poller = make_poller(aws, invoke, batch_size=1, maximum_retry_attempts=2)
    put_job(aws["dynamodb"], "job-0", "pending")
    put_job(aws["dynamodb"], "job-1", "pending")
    drain(poller)
    assert calls == [["job-0"], ["job-0"], ["job-0"], ["job-1"]]
    assert poller.stats.records_to_dlq == 1
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10)["Messages"]
    (message,) = [json.loads(m["Body"]) for m in messages]
    info = message["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1
    assert info["streamArn"] == aws["stream_arn"]
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3


def test_a_function_error_bisects_the_batch_so_only_the_poison_record_is_dead_lettered(
    aws: dict[str, Any],
) -> None:
    delivered: list[str] = []

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        ids = [r["dynamodb"]["Keys"]["job_id"]["S"] for r in event["Records"]]
        if "job-2" in ids:
            raise RuntimeError("launcher crashed on job-2")
        delivered.extend(ids)
        return {"batchItemFailures": []}

    poller = make_poller(aws, invoke, batch_size=4, maximum_retry_attempts=1)
    for index in range(6):
        put_job(aws["dynamodb"], f"job-{index}", "pending")
    drain(poller, rounds=40)
    assert delivered == ["job-0", "job-1", "job-3", "job-4", "job-5"]
    assert poller.stats.records_to_dlq == 1
    assert poller.stats.bisections >= 2
    [message] = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10)["Messages"]
    assert json.loads(message["Body"])["DDBStreamBatchInfo"]["batchSize"] == 1


def test_unknown_failure_identifier_fails_the_whole_batch() -> None:
    batch = [{"dynamodb": {"SequenceNumber": "10"}}, {"dynamodb": {"SequenceNumber": "11"}}]
    assert failed_from(batch, {"batchItemFailures": []}) is None
    assert failed_from(batch, None) is None
    assert failed_from(batch, {"batchItemFailures": [{"itemIdentifier": "11"}]}) == 1
    assert failed_from(batch, {"batchItemFailures": [{"itemIdentifier": "99"}]}) == 0
    assert failed_from(batch, {"batchItemFailures": [{"itemIdentifier": None}]}) == 0


def test_a_batching_window_gathers_records_before_the_call(aws: dict[str, Any]) -> None:
    batches: list[int] = []
    poller = make_poller(
        aws, lambda event: batches.append(len(event["Records"])), batching_window_seconds=0.5
    )
    put_job(aws["dynamodb"], "job-0", "pending")
    drain(poller)
    put_job(aws["dynamodb"], "job-1", "pending")
    drain(poller)
    assert batches == []  # the window is still open
    time.sleep(0.6)
    drain(poller)
    assert batches == [2]


def test_records_older_than_the_maximum_age_go_to_the_dlq_uncalled(aws: dict[str, Any]) -> None:
    calls: list[Any] = []
    poller = make_poller(aws, calls.append, maximum_record_age_seconds=0)
    put_job(aws["dynamodb"], "job-0", "pending")
    time.sleep(0.05)
    drain(poller)
    assert calls == []
    [message] = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10)["Messages"]
    assert json.loads(message["Body"])["requestContext"]["condition"] == "RecordAgeExceeded"


def test_without_partial_batch_responses_the_answer_is_ignored(aws: dict[str, Any]) -> None:
    calls: list[int] = []

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        return {"batchItemFailures": [{"itemIdentifier": "whatever"}]}

    poller = make_poller(aws, invoke, report_batch_item_failures=False)
    put_job(aws["dynamodb"], "job-0", "pending")
    drain(poller)
    assert calls == [1]
    assert poller.stats.retries == 0
