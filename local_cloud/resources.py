"""The AWS resources of one deployment, created in moto from the definitions Terraform uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.tables import API_KEYS_TABLE, JOBS_TABLE, JOBS_TTL_ATTRIBUTE

# The image the local launch template names: any Linux image that moto knows.
IMAGE_NAME_PATTERN = "amzn2-ami-hvm-*"
DEFAULT_INSTANCE_TYPE = "t3.medium"
LOG_RETENTION_DAYS = 7


@dataclass(frozen=True)
class Resources:
    jobs_table: str
    api_keys_table: str
    stream_arn: str
    kms_key_id: str
    launch_template_id: str
    subnet_ids: list[str]
    worker_log_group: str
    dlq_url: str
    dlq_arn: str
    project_tag: str


def create_tables(dynamodb_client: Any, *, jobs_table: str, api_keys_table: str) -> None:
    """Create both tables as Terraform declares them."""
    dynamodb_client.create_table(TableName=jobs_table, **JOBS_TABLE)
    dynamodb_client.update_time_to_live(
        TableName=jobs_table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": JOBS_TTL_ATTRIBUTE},
    )
    dynamodb_client.create_table(TableName=api_keys_table, **API_KEYS_TABLE)


def create_resources(clients: dict[str, Any], *, prefix: str) -> Resources:
    """Tables (keys, indexes, stream, TTL), the KMS key, the worker launch template and
    log group, and the launcher's dead-letter queue."""
    jobs_table = f"{prefix}-jobs"
    api_keys_table = f"{prefix}-api-keys"
    dynamodb = clients["dynamodb"]
    create_tables(dynamodb, jobs_table=jobs_table, api_keys_table=api_keys_table)
    stream_arn = dynamodb.describe_table(TableName=jobs_table)["Table"]["LatestStreamArn"]

    kms = clients["kms"]
    key_id = kms.create_key(Description=f"{prefix}: replication job credentials")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=f"alias/{prefix}-job-credentials", TargetKeyId=key_id)

    ec2 = clients["ec2"]
    images = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": [IMAGE_NAME_PATTERN]}]
    )
    image_id = sorted(images["Images"], key=lambda i: i.get("CreationDate", ""))[-1]["ImageId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    subnet_ids = sorted(s["SubnetId"] for s in subnets)[:2]
    template = ec2.create_launch_template(
        LaunchTemplateName=f"{prefix}-worker",
        LaunchTemplateData={
            "ImageId": image_id,
            "InstanceType": DEFAULT_INSTANCE_TYPE,
            # The launcher writes the user-data per job; the template keeps IMDSv2 required.
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpEndpoint": "enabled",
                "HttpPutResponseHopLimit": 1,
            },
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": [{"Key": "Project", "Value": prefix}]}
            ],
        },
    )["LaunchTemplate"]

    log_group = f"/{prefix}/worker"
    clients["logs"].create_log_group(logGroupName=log_group)
    clients["logs"].put_retention_policy(logGroupName=log_group, retentionInDays=LOG_RETENTION_DAYS)

    sqs = clients["sqs"]
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-launcher-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return Resources(
        jobs_table=jobs_table,
        api_keys_table=api_keys_table,
        stream_arn=stream_arn,
        kms_key_id=key_id,
        launch_template_id=template["LaunchTemplateId"],
        subnet_ids=subnet_ids,
        worker_log_group=log_group,
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        project_tag=prefix,
    )
