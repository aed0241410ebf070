"""The local moto server keeps DynamoDB's guarantees the service relies on: a cancelled
transaction changes nothing, and the table's stream goes on for the readers it had."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local_cloud.moto_server import MotoServer
from local_cloud.resources import create_tables

TABLE = "moto-jobs"


@pytest.fixture(scope="module")
def dynamodb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    server = MotoServer(Path(tmp_path_factory.mktemp("moto")) / "moto.log").start()
    try:
        session = boto3.session.Session(
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        client = session.client("dynamodb", endpoint_url=server.url)
        create_tables(client, jobs_table=TABLE, api_keys_table="moto-keys")
        yield client, session.client("dynamodbstreams", endpoint_url=server.url)
    finally:
        server.stop()


def test_a_cancelled_transaction_leaves_the_stream_readable(dynamodb: tuple[Any, Any]) -> None:
    client, streams = dynamodb
    stream_arn = client.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard, ShardIteratorType="LATEST")[
        "ShardIterator"
    ]
    client.put_item(TableName=TABLE, Item={"job_id": {"S": "existing"}})
    with pytest.raises(ClientError, match="TransactionCanceled"):
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": {"job_id": {"S": "undone"}}}},
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": {"job_id": {"S": "existing"}},
                        "ConditionExpression": "attribute_not_exists(job_id)",
                    }
                },
            ]
        )
    client.put_item(TableName=TABLE, Item={"job_id": {"S": "after"}})

    records = streams.get_records(ShardIterator=iterator)["Records"]
    assert [r["dynamodb"]["Keys"]["job_id"]["S"] for r in records] == ["existing", "after"]
    assert "Item" not in client.get_item(TableName=TABLE, Key={"job_id": {"S": "undone"}})
