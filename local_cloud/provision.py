"""Provisions one deployment in moto, either way the local cloud offers.

With the module's variables (local_cloud/stack.py: `module_variables`), `apply_module` runs
the real `terraform/` module against moto (about a minute), and `provision_fast` creates the
same AWS objects through the same APIs directly (seconds): tables, keys, roles, log groups,
the dead-letter queue, the launch template, the three functions with a placeholder zip,
published versions and the `live` alias, the stream mapping, the HTTP API with its routes
and integration, and the schedule with its target. tests/e2e/test_e2e_terraform.py compares
what the two ways create. The drivers then read the wiring back from the APIs
(local_cloud/wiring.py), whichever way it was made.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_cloud.resources import create_tables
from local_cloud.terraform import MODULE_DIR, Terraform
from local_cloud.wiring import LIVE_ALIAS
from services.reaper import schedule as reaper_schedule

# Any Linux image that moto knows stands for the worker AMI.
IMAGE_NAME_PATTERN = "amzn2-ami-hvm-*"
LAMBDA_RUNTIME = "python3.12"
LAMBDA_ARCHITECTURE = "arm64"
GENERATED_DIR = MODULE_DIR / "generated"

# The functions as terraform/lambda.tf declares them (tests/infra compares the two ways).
API_INTEGRATION_TIMEOUT_SECONDS = 20
FUNCTIONS: dict[str, dict[str, Any]] = {
    "api": {
        "description": "Replication jobs HTTP API",
        "handler": "services.api.handler.lambda_handler",
        "memory": 512,
        "timeout": API_INTEGRATION_TIMEOUT_SECONDS - 5,
    },
    "launcher": {
        "description": "Launches workers for new jobs from the jobs stream",
        "handler": "services.launcher.handler.lambda_handler",
        "memory": 512,
        "timeout": 120,
    },
    "reaper": {
        "description": (
            "Safety net: stale heartbeats, deadlines, stuck launches, orphan instances, queued jobs"
        ),
        "handler": "services.reaper.handler.lambda_handler",
        "memory": 512,
        "timeout": 300,
    },
}
LAMBDA_ASSUME = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
EC2_ASSUME = LAMBDA_ASSUME.replace("lambda.amazonaws.com", "ec2.amazonaws.com")


@dataclass(frozen=True)
class Network:
    """Where moto's default VPC puts workers, and an image to name in the launch template."""

    vpc_id: str
    subnet_ids: list[str]
    image_id: str


def local_network(ec2: Any) -> Network:
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    images = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": [IMAGE_NAME_PATTERN]}]
    )
    image = sorted(images["Images"], key=lambda i: i.get("CreationDate", ""))[-1]["ImageId"]
    return Network(vpc_id=vpc, subnet_ids=sorted(s["SubnetId"] for s in subnets)[:2], image_id=image)


def write_placeholder_package(directory: Path) -> Path:
    """Zips and manifest in the shape `make package` writes: the functions' code runs from
    the checkout, so each zip only has to exist."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in FUNCTIONS:
        (directory / f"{name}.zip").write_bytes(placeholder_zip())
    manifest = {"architecture": LAMBDA_ARCHITECTURE, "python_version": LAMBDA_RUNTIME.removeprefix("python")}
    (directory / "package-manifest.json").write_text(json.dumps(manifest) + "\n")
    return directory


def placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # A fixed timestamp: the same bytes every time, so Terraform sees no change.
        info = zipfile.ZipInfo("README.txt", date_time=(2020, 1, 1, 0, 0, 0))
        archive.writestr(info, "The local cloud runs the functions from the checkout.\n")
    return buffer.getvalue()


def _number(value: float) -> str:
    """A number as Terraform's tostring() writes it: whole numbers without a fraction."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _compact_json(value: Any) -> str:
    """JSON as Terraform's jsonencode writes it: object keys sorted, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def launcher_filter_patterns() -> list[str]:
    return [_compact_json(p) for p in json.loads((GENERATED_DIR / "launcher_filters.json").read_text())]


def api_route_keys() -> list[str]:
    return sorted(json.loads((GENERATED_DIR / "api_routes.json").read_text()))


# ---- the fast way ------------------------------------------------------------------------------


def function_environments(variables: dict[str, Any], ids: dict[str, str]) -> dict[str, dict[str, str]]:
    """terraform/environment.tf, evaluated for these variables and resource ids."""

    def flag(name: str) -> str:
        return "true" if variables[name] else "false"

    suffixes = ",".join(variables["allowed_target_suffixes"])
    common = {
        "JOBS_TABLE_NAME": variables["dynamodb_table_name"],
        "POWERTOOLS_METRICS_NAMESPACE": variables["metrics_namespace"],
        "POWERTOOLS_LOG_LEVEL": variables["log_level"],
        "ALLOWED_TARGET_SUFFIXES": suffixes,
        "ALLOW_LOOPBACK_HOSTS": flag("allow_loopback_hosts"),
        "ALLOW_PRIVATE_HOSTS": flag("allow_private_hosts"),
        "WORKER_LOG_GROUP": ids["worker_log_group"],
        "MAX_JOB_RUNTIME_SECONDS": str(variables["max_job_runtime_seconds"]),
    }
    launching = {
        **common,
        "MAX_CONCURRENT_JOBS": str(variables["max_concurrent_jobs"]),
        "MAX_RUNNING_JOBS_PER_OWNER": str(variables["max_running_jobs_per_owner"]),
        "LAUNCH_TEMPLATE_ID": ids["launch_template_id"],
        "LAUNCH_TEMPLATE_VERSION": ids["launch_template_version"],
        "SUBNET_IDS": ",".join(variables["subnet_ids"]),
        "DEFAULT_INSTANCE_TYPE": variables["worker_instance_type"],
        "INSTANCE_TYPE_BY_SIZE": _compact_json(
            [[e.get("below_bytes"), e["instance_type"]] for e in variables["worker_instance_type_by_size"]]
        ),
        "FALLBACK_INSTANCE_TYPES": ",".join(variables["worker_fallback_instance_types"]),
        "PROJECT_TAG": variables["project_name"],
        "LAUNCH_LEASE_SECONDS": str(variables["launch_lease_seconds"]),
        "MAX_CAPACITY_FAILURES": str(variables["max_capacity_failures"]),
        "MAX_LAUNCH_ATTEMPTS": str(variables["max_launch_attempts"]),
        "WORKER_CAPACITY": variables["worker_capacity"],
        "WORKER_ENGINE": variables["worker_engine"],
        "HEARTBEAT_INTERVAL_SECONDS": str(variables["heartbeat_interval_seconds"]),
        "WORKER_ROLE_ID": ids["worker_role_id"],
        "JOB_LOG_RETENTION_DAYS": str(variables["log_retention_days"]),
        "JOB_LOG_KMS_KEY_ID": ids["data_key_arn"],
        "KMS_KEY_ID": ids["credentials_key_arn"],
        "WORKER_SHUTDOWN_IF_NOT_TERMINATED": flag("worker_shutdown_if_not_terminated"),
        "SEREN_CONSOLE_URL": variables["seren_console_url"],
    }
    grace = variables["reaper_grace_seconds"]
    return {
        "api": {
            **common,
            "API_KEYS_TABLE_NAME": f"{variables['project_name']}-api-keys",
            "KMS_KEY_ID": ids["credentials_key_arn"],
            "REQUEST_MAC_KEY_ID": ids["request_mac_key_arn"],
            "JOB_RETENTION_DAYS": str(variables["job_retention_days"]),
            "MAX_UNFINISHED_JOBS_PER_OWNER": str(variables["max_unfinished_jobs_per_owner"]),
            "MAX_ESTIMATED_SIZE_BYTES": str(variables["max_estimated_size_bytes"]),
            "API_KEY_RATE_PER_SECOND": _number(variables["api_key_rate_per_second"]),
            "API_KEY_BURST": str(variables["api_key_burst"]),
            "POWERTOOLS_SERVICE_NAME": "api",
        },
        "launcher": {**launching, "POWERTOOLS_SERVICE_NAME": "launcher"},
        "reaper": {
            **launching,
            "HEARTBEAT_TIMEOUT_SECONDS": str(variables["heartbeat_timeout_seconds"]),
            "PROVISIONING_GRACE_SECONDS": str(variables["provisioning_grace_seconds"]),
            "DEADLINE_GRACE_SECONDS": str(grace["deadline"]),
            "CANCEL_GRACE_SECONDS": str(grace["cancel"]),
            "PENDING_GRACE_SECONDS": str(grace["pending"]),
            "SLOT_HOLD_GRACE_SECONDS": str(grace["slot_hold"]),
            "ORPHAN_GRACE_SECONDS": str(grace["orphan"]),
            "POWERTOOLS_SERVICE_NAME": "reaper",
        },
    }


def provision_fast(clients: dict[str, Any], variables: dict[str, Any]) -> None:
    """What `terraform apply` of the module creates that the service and its drivers use."""
    project = variables["project_name"]
    region = variables["aws_region"]
    jobs_table = variables["dynamodb_table_name"]
    dynamodb = clients["dynamodb"]
    create_tables(dynamodb, jobs_table=jobs_table, api_keys_table=f"{project}-api-keys")
    stream_arn = dynamodb.describe_table(TableName=jobs_table)["Table"]["LatestStreamArn"]

    kms = clients["kms"]
    key = kms.create_key(Description=f"{project}: job connection credentials")["KeyMetadata"]
    kms.create_alias(AliasName=f"alias/{project}-credentials", TargetKeyId=key["KeyId"])
    mac_key = kms.create_key(
        Description=f"{project}: request fingerprints (HMAC)",
        KeyUsage="GENERATE_VERIFY_MAC",
        KeySpec="HMAC_256",
    )["KeyMetadata"]
    kms.create_alias(AliasName=f"alias/{project}-request-mac", TargetKeyId=mac_key["KeyId"])
    # The service's data at rest: here only the jobs' log groups, which the launcher creates.
    data_key = kms.create_key(Description=f"{project}: tables, stream, queue, topic and logs at rest")[
        "KeyMetadata"
    ]

    iam = clients["iam"]
    roles = {
        name: iam.create_role(RoleName=f"{project}-{name}", AssumeRolePolicyDocument=LAMBDA_ASSUME)["Role"][
            "Arn"
        ]
        for name in FUNCTIONS
    }
    worker_role = variables["worker_iam_role_name"]
    worker_role_id = iam.create_role(RoleName=worker_role, AssumeRolePolicyDocument=EC2_ASSUME)["Role"][
        "RoleId"
    ]
    profile = iam.create_instance_profile(InstanceProfileName=worker_role)["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName=worker_role, RoleName=worker_role)

    logs = clients["logs"]
    worker_log_group = f"/{project}/workers"
    for group in [worker_log_group, *(f"/aws/lambda/{project}-{name}" for name in FUNCTIONS)]:
        logs.create_log_group(logGroupName=group)
        logs.put_retention_policy(logGroupName=group, retentionInDays=variables["log_retention_days"])

    sqs = clients["sqs"]
    dlq_url = sqs.create_queue(QueueName=f"{project}-launcher-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]

    template = _create_launch_template(clients["ec2"], variables, profile["Arn"])
    ids = {
        "worker_log_group": worker_log_group,
        "worker_role_id": worker_role_id,
        "launch_template_id": template["LaunchTemplateId"],
        "launch_template_version": str(template["LatestVersionNumber"]),
        "credentials_key_arn": key["Arn"],
        "request_mac_key_arn": mac_key["Arn"],
        "data_key_arn": data_key["Arn"],
    }
    aliases = _create_functions(clients["lambda"], variables, roles, function_environments(variables, ids))

    lambda_client = clients["lambda"]
    lambda_client.create_event_source_mapping(
        EventSourceArn=stream_arn,
        FunctionName=aliases["launcher"],
        StartingPosition="LATEST",
        BatchSize=variables["launcher_batch_size"],
        MaximumBatchingWindowInSeconds=variables["launcher_batching_window_seconds"],
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=variables["launcher_maximum_retry_attempts"],
        MaximumRecordAgeInSeconds=variables["launcher_maximum_record_age_seconds"],
        FunctionResponseTypes=["ReportBatchItemFailures"],
        FilterCriteria={"Filters": [{"Pattern": p} for p in launcher_filter_patterns()]},
        DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
    )
    _create_api(clients["apigatewayv2"], lambda_client, project, region, aliases["api"])
    _create_schedule(clients["events"], lambda_client, variables, aliases["reaper"])


def _create_launch_template(ec2: Any, variables: dict[str, Any], profile_arn: str) -> dict[str, Any]:
    project = variables["project_name"]
    group = ec2.create_security_group(
        GroupName=f"{project}-worker",
        Description="Replication workers: no inbound traffic; outbound to PostgreSQL and HTTPS only",
        VpcId=variables["vpc_id"],
    )["GroupId"]
    tags = [
        {"Key": "ManagedBy", "Value": variables["dynamodb_table_name"]},
        {"Key": "Project", "Value": project},
        {"Key": "Role", "Value": "replication-worker"},
    ]
    # The provider's default_tags, which Terraform puts on the template itself.
    default_tags = [
        {"Key": "Project", "Value": project},
        {"Key": "Environment", "Value": variables["environment"]},
    ]
    return dict(
        ec2.create_launch_template(
            LaunchTemplateName=f"{project}-worker",
            VersionDescription=(
                "Replication worker; the launcher sets subnet, instance type, user-data and job tags"
            ),
            LaunchTemplateData={
                "ImageId": variables["worker_ami_id"],
                "InstanceType": variables["worker_instance_type"],
                "InstanceInitiatedShutdownBehavior": "terminate",
                "EbsOptimized": True,
                "SecurityGroupIds": [group],
                "IamInstanceProfile": {"Arn": profile_arn},
                "MetadataOptions": {
                    "HttpEndpoint": "enabled",
                    "HttpTokens": "required",
                    "HttpPutResponseHopLimit": 1,
                    "InstanceMetadataTags": "disabled",
                },
                "Monitoring": {"Enabled": True},
                "BlockDeviceMappings": [
                    {
                        "DeviceName": variables["worker_root_device_name"],
                        "Ebs": {
                            "VolumeType": "gp3",
                            "VolumeSize": variables["worker_root_volume_size_gb"],
                            "Encrypted": True,
                            "DeleteOnTermination": True,
                        },
                    }
                ],
                "TagSpecifications": [
                    {"ResourceType": "instance", "Tags": tags},
                    {"ResourceType": "volume", "Tags": tags},
                ],
                "UserData": "",
            },
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": default_tags}],
        )["LaunchTemplate"]
    )


def _create_functions(
    lambda_client: Any,
    variables: dict[str, Any],
    roles: dict[str, str],
    environments: dict[str, dict[str, str]],
) -> dict[str, str]:
    """Each function, its first published version and its `live` alias: alias ARNs. As in
    terraform/lambda.tf, the API's alias follows $LATEST, the others' their version."""
    code = placeholder_zip()
    aliases = {}
    for name, function in FUNCTIONS.items():
        function_name = f"{variables['project_name']}-{name}"
        created = lambda_client.create_function(
            FunctionName=function_name,
            Description=function["description"],
            Role=roles[name],
            Handler=function["handler"],
            Runtime=variables["lambda_runtime"],
            Architectures=[variables["lambda_architecture"]],
            MemorySize=function["memory"],
            Timeout=function["timeout"],
            Code={"ZipFile": code},
            Publish=True,
            Environment={"Variables": environments[name]},
            TracingConfig={"Mode": "Active"},
        )
        reserved = variables[f"{name}_reserved_concurrency"]
        if reserved != -1:
            lambda_client.put_function_concurrency(
                FunctionName=function_name, ReservedConcurrentExecutions=reserved
            )
        aliases[name] = lambda_client.create_alias(
            FunctionName=function_name,
            Name=LIVE_ALIAS,
            FunctionVersion="$LATEST" if name == "api" else created["Version"],
            Description="The version the API, the stream mapping and the schedule invoke",
        )["AliasArn"]
    reaper = f"{variables['project_name']}-reaper"
    lambda_client.put_function_event_invoke_config(
        FunctionName=reaper,
        Qualifier=LIVE_ALIAS,
        MaximumRetryAttempts=0,
        MaximumEventAgeInSeconds=60 * variables["reaper_schedule_minutes"],
    )
    return aliases


def _create_api(apigateway: Any, lambda_client: Any, project: str, region: str, function_arn: str) -> None:
    api = apigateway.create_api(
        Name=f"{project}-api", ProtocolType="HTTP", Description="Remote replication jobs"
    )
    integration = apigateway.create_integration(
        ApiId=api["ApiId"],
        IntegrationType="AWS_PROXY",
        IntegrationMethod="POST",
        IntegrationUri=f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations",
        PayloadFormatVersion="2.0",
        TimeoutInMillis=API_INTEGRATION_TIMEOUT_SECONDS * 1000,
    )
    for key in api_route_keys():
        apigateway.create_route(
            ApiId=api["ApiId"],
            RouteKey=key,
            Target=f"integrations/{integration['IntegrationId']}",
            AuthorizationType="NONE",
        )
    apigateway.create_stage(ApiId=api["ApiId"], StageName="$default", AutoDeploy=True)
    lambda_client.add_permission(
        FunctionName=function_arn,
        StatementId="AllowHttpApi",
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
    )


def _create_schedule(events: Any, lambda_client: Any, variables: dict[str, Any], function_arn: str) -> None:
    name = reaper_schedule.rule_name(variables["project_name"])
    minutes = variables["reaper_schedule_minutes"]
    rule_arn = events.put_rule(
        Name=name, Description="Runs the reaper", ScheduleExpression=reaper_schedule.rate_expression(minutes)
    )["RuleArn"]
    events.put_targets(
        Rule=name,
        Targets=[
            {
                "Id": "reaper",
                "Arn": function_arn,
                "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60 * minutes},
            }
        ],
    )
    lambda_client.add_permission(
        FunctionName=function_arn,
        StatementId="AllowEventBridgeSchedule",
        Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com",
        SourceArn=rule_arn,
    )


# ---- the Terraform way ----------------------------------------------------------------------


def module_terraform(work_dir: Path, aws_environment: dict[str, str]) -> Terraform:
    """The module, run with its data, state and variables in `work_dir`, against the AWS
    endpoint the environment names (AWS_ENDPOINT_URL, fake credentials, region)."""
    return Terraform(work_dir=work_dir, environment=aws_environment)


def apply_module(terraform: Terraform, variables: dict[str, Any]) -> dict[str, Any]:
    """`terraform apply` of the module with these variables (and a placeholder package
    beside them); its outputs."""
    package_dir = write_placeholder_package(terraform.work_dir / "package")
    terraform.write_variables({**variables, "lambda_package_dir": str(package_dir)})
    terraform.init()
    terraform.apply()
    return terraform.outputs()
