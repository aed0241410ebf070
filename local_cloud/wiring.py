"""What was deployed, read back from the AWS APIs: the wiring the local drivers follow.

Whether Terraform or the fast provisioning created the stack, the drivers learn everything
from here: which function the HTTP API's routes reach and with which payload version and
timeout; each function's handler, environment, memory and timeout (its `live` alias);
the stream mapping's filters and delivery settings; the schedule's rate and target; the
workers' launch template. Nothing of it is a Python constant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from services.reaper import schedule as reaper_schedule

LIVE_ALIAS = "live"
# arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
_FUNCTION_ARN = re.compile(r"arn:[^:]+:lambda:[^:]+:\d+:function:([^:/]+)(?::([^:/]+))?")
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class WiringError(RuntimeError):
    """The deployment lacks something the local cloud needs, or has it in a form it cannot run."""


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    qualifier: str
    arn: str
    handler: str
    environment: dict[str, str]
    memory_mb: int
    timeout_seconds: int


@dataclass(frozen=True)
class ApiWiring:
    api_id: str
    name: str
    route_keys: tuple[str, ...]
    function: FunctionConfig
    payload_format_version: str
    timeout_seconds: float


@dataclass(frozen=True)
class StreamWiring:
    stream_arn: str
    function: FunctionConfig
    filter_patterns: tuple[str, ...]
    batch_size: int
    batching_window_seconds: int
    bisect_on_error: bool
    maximum_retry_attempts: int
    maximum_record_age_seconds: int
    on_failure_arn: str
    report_batch_item_failures: bool
    starting_position: str


@dataclass(frozen=True)
class ScheduleWiring:
    rule_name: str
    rule_arn: str
    interval_seconds: int
    function: FunctionConfig


@dataclass(frozen=True)
class Wiring:
    api: ApiWiring
    stream: StreamWiring
    schedule: ScheduleWiring
    launch_template_id: str
    launch_template: dict[str, Any]

    @property
    def functions(self) -> dict[str, FunctionConfig]:
        return {f.name: f for f in (self.api.function, self.stream.function, self.schedule.function)}


def function_reference(arn: str) -> tuple[str, str | None]:
    """(name, qualifier) of a function ARN, qualified or not."""
    found = _FUNCTION_ARN.search(arn)
    if found is None:
        raise WiringError(f"not a Lambda function ARN: {arn}")
    return found.group(1), found.group(2)


def rate_seconds(expression: str) -> int:
    found = _RATE.fullmatch(expression.strip())
    if found is None:
        raise WiringError(f"the local scheduler runs rate() schedules only, not {expression!r}")
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2).rstrip("s")]


def read_function(lambda_client: Any, arn: str) -> FunctionConfig:
    """A function's configuration as its caller reaches it (alias or version in the ARN)."""
    name, qualifier = function_reference(arn)
    qualifier = qualifier or "$LATEST"
    config = lambda_client.get_function_configuration(FunctionName=name, Qualifier=qualifier)
    return FunctionConfig(
        name=config["FunctionName"],
        qualifier=qualifier,
        arn=config["FunctionArn"],
        handler=config["Handler"],
        environment=dict(config.get("Environment", {}).get("Variables", {})),
        memory_mb=int(config["MemorySize"]),
        timeout_seconds=int(config["Timeout"]),
    )


def _invoked_arn(integration_uri: str) -> str:
    """The function ARN inside an AWS_PROXY integration's URI."""
    found = re.search(r"/functions/(arn:[^/]+)/invocations", integration_uri)
    return found.group(1) if found else integration_uri


def read_api(apigateway: Any, lambda_client: Any, api_name: str) -> ApiWiring:
    apis = [a for a in apigateway.get_apis().get("Items", []) if a["Name"] == api_name]
    if len(apis) != 1:
        raise WiringError(f"expected one HTTP API named {api_name}, found {len(apis)}")
    api_id = apis[0]["ApiId"]
    integrations = {i["IntegrationId"]: i for i in apigateway.get_integrations(ApiId=api_id).get("Items", [])}
    routes = apigateway.get_routes(ApiId=api_id).get("Items", [])
    targets = {r.get("Target", "").removeprefix("integrations/") for r in routes}
    if len(targets) != 1 or next(iter(targets)) not in integrations:
        raise WiringError(f"API {api_name}: the local front serves routes with one integration only")
    integration = integrations[targets.pop()]
    if integration["IntegrationType"] != "AWS_PROXY":
        raise WiringError(
            f"API {api_name}: integration type {integration['IntegrationType']} is not AWS_PROXY"
        )
    return ApiWiring(
        api_id=api_id,
        name=api_name,
        route_keys=tuple(sorted(r["RouteKey"] for r in routes)),
        function=read_function(lambda_client, _invoked_arn(integration["IntegrationUri"])),
        payload_format_version=integration["PayloadFormatVersion"],
        timeout_seconds=int(integration.get("TimeoutInMillis", 30000)) / 1000,
    )


def read_stream(lambda_client: Any, stream_arn: str) -> StreamWiring:
    mappings = [
        m
        for m in lambda_client.list_event_source_mappings().get("EventSourceMappings", [])
        if m["EventSourceArn"] == stream_arn
    ]
    if len(mappings) != 1:
        raise WiringError(f"expected one event source mapping on {stream_arn}, found {len(mappings)}")
    mapping = mappings[0]
    function = read_function(lambda_client, mapping["FunctionArn"])
    return StreamWiring(
        stream_arn=stream_arn,
        function=function,
        # A set: Terraform sends the filters in no fixed order, and any one passes a record.
        filter_patterns=tuple(
            sorted(f["Pattern"] for f in mapping.get("FilterCriteria", {}).get("Filters", []))
        ),
        batch_size=int(mapping["BatchSize"]),
        batching_window_seconds=int(mapping.get("MaximumBatchingWindowInSeconds", 0)),
        bisect_on_error=bool(mapping.get("BisectBatchOnFunctionError", False)),
        maximum_retry_attempts=int(mapping.get("MaximumRetryAttempts", -1)),
        maximum_record_age_seconds=int(mapping.get("MaximumRecordAgeInSeconds", -1)),
        on_failure_arn=mapping.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination", ""),
        report_batch_item_failures="ReportBatchItemFailures" in mapping.get("FunctionResponseTypes", []),
        starting_position=mapping.get("StartingPosition", "LATEST"),
    )


def read_schedule(events: Any, lambda_client: Any, rule_name: str) -> ScheduleWiring:
    rule = events.describe_rule(Name=rule_name)
    targets = events.list_targets_by_rule(Rule=rule_name).get("Targets", [])
    if len(targets) != 1:
        raise WiringError(f"rule {rule_name}: expected one target, found {len(targets)}")
    if {"Input", "InputPath", "InputTransformer"} & set(targets[0]):
        raise WiringError(f"rule {rule_name}: the local scheduler sends the Scheduled Event only")
    return ScheduleWiring(
        rule_name=rule_name,
        rule_arn=rule["Arn"],
        interval_seconds=rate_seconds(rule["ScheduleExpression"]),
        function=read_function(lambda_client, targets[0]["Arn"]),
    )


def read_launch_template(ec2: Any, template_id: str) -> dict[str, Any]:
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=["$Latest"])
    return dict(versions["LaunchTemplateVersions"][0]["LaunchTemplateData"])


def read_wiring(clients: dict[str, Any], *, project_name: str) -> Wiring:
    """The deployment of `project_name`: its API is "<project>-api" and its schedule the
    reaper's rule (the module's names); everything else is followed from there."""
    lambda_client = clients["lambda"]
    api = read_api(clients["apigatewayv2"], lambda_client, f"{project_name}-api")
    table = api.function.environment.get("JOBS_TABLE_NAME")
    if not table:
        raise WiringError(f"function {api.function.name} has no JOBS_TABLE_NAME")
    stream_arn = clients["dynamodb"].describe_table(TableName=table)["Table"]["LatestStreamArn"]
    stream = read_stream(lambda_client, stream_arn)
    schedule = read_schedule(clients["events"], lambda_client, reaper_schedule.rule_name(project_name))
    template_id = stream.function.environment.get("LAUNCH_TEMPLATE_ID", "")
    if not template_id:
        raise WiringError(f"function {stream.function.name} has no LAUNCH_TEMPLATE_ID")
    return Wiring(
        api=api,
        stream=stream,
        schedule=schedule,
        launch_template_id=template_id,
        launch_template=read_launch_template(clients["ec2"], template_id),
    )
