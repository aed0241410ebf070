"""Terraform agrees with the code, read at test time: environment variables, IAM actions,
handler paths, tables, generated files (filters, routes) and metric names."""

from __future__ import annotations

import ast
import importlib
import json
import re
from typing import Any

import pytest
from code_calls import aws_actions
from pydantic import AliasChoices, AliasPath, BaseModel
from terraform_config import ROOT, TERRAFORM_DIR, TerraformConfig, attr, blocks, policy_statements

from build_tools.generate import generated_files
from build_tools.modules import module_path, package_modules
from jobs.store import UNREADABLE_ITEM
from jobs.tables import API_KEYS_TABLE, JOBS_TABLE, JOBS_TTL_ATTRIBUTE

FUNCTIONS = ("api", "launcher", "reaper")
# Set by the Lambda runtime itself; a function must not set them.
LAMBDA_RESERVED = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_FUNCTION_NAME"})
POWERTOOLS = re.compile(r"POWERTOOLS_\w+")
TABLE_MODULES = {"jobs.api_keys": "${aws_dynamodb_table.api_keys.arn}"}


def environment_alternatives(model: type[BaseModel]) -> list[frozenset[str]]:
    """Per field, the environment variables any one of which sets it (pydantic-settings
    rules: the field name with env_prefix, or its aliases; case-insensitive by default)."""
    config = model.model_config
    prefix = str(config.get("env_prefix", ""))
    case_sensitive = bool(config.get("case_sensitive", False))
    fields = []
    for name, info in model.model_fields.items():
        alias = info.validation_alias or info.alias
        if isinstance(alias, AliasChoices):
            names = [c if isinstance(c, str) else str(c.path[0]) for c in alias.choices]
        elif isinstance(alias, AliasPath):
            names = [str(alias.path[0])]
        elif isinstance(alias, str):
            names = [alias]
        else:
            names = [prefix + name]
        fields.append(frozenset(n if case_sensitive else n.upper() for n in names))
    return fields


def _settings(service: str) -> tuple[type[BaseModel], frozenset[str]]:
    module = importlib.import_module(f"services.{service}.settings")
    runtime = frozenset(getattr(module, "RUNTIME_VARIABLES", frozenset()))
    assert runtime <= LAMBDA_RESERVED, "a settings model may leave out only what Lambda sets"
    return module.Settings, runtime


def _function_environment(tf: TerraformConfig, service: str) -> dict[str, Any]:
    function = tf.resource("aws_lambda_function", "service")
    assert attr(blocks(function, "environment")[0], "variables") == "${local.function_environments[each.key]}"
    return dict(tf.local(tf.locals["function_environments"][service]))


@pytest.mark.parametrize("service", sorted(FUNCTIONS))
def test_function_sets_exactly_the_variables_its_settings_model_reads(
    tf: TerraformConfig, service: str
) -> None:
    model, runtime = _settings(service)
    environment = set(_function_environment(tf, service))
    alternatives = [names for names in environment_alternatives(model) if not names & runtime]
    unset = [sorted(names) for names in alternatives if not names & environment]
    assert unset == [], f"{service}: settings read but not set by Terraform"
    readable = set().union(*alternatives)
    extra = {name for name in environment - readable if not POWERTOOLS.fullmatch(name)}
    assert extra == set(), f"{service}: set by Terraform but read by no setting"
    assert not environment & LAMBDA_RESERVED
    assert _function_environment(tf, service)["POWERTOOLS_SERVICE_NAME"] == service


def test_user_data_carries_what_the_worker_settings_require() -> None:
    from control_plane.user_data import worker_environment
    from services.launcher.settings import Settings as LauncherSettings
    from worker.settings import Settings as WorkerSettings

    launcher = LauncherSettings(jobs_table_name="jobs-test", aws_region="us-east-1",
                                launch_template_id="lt-0", worker_log_group="/test/workers",
                                worker_role_id="AROATESTWORKERROLE00")  # fmt: skip
    passed = set(worker_environment(launcher))
    alternatives = environment_alternatives(WorkerSettings)
    # worker.sh reads a few itself (${NAME:-default}) before the Python worker starts.
    script = (ROOT / "worker" / "worker.sh").read_text()
    read_by_script = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):-", script))
    readable = set().union(*alternatives) | read_by_script | {"AWS_REGION", "AWS_DEFAULT_REGION"}
    assert passed <= readable, "user-data exports variables the worker does not read"
    required = [
        names
        for names, info in zip(alternatives, WorkerSettings.model_fields.values(), strict=True)
        if info.is_required()
    ]
    assert all(names & passed for names in required)


def _identity_statements(tf: TerraformConfig, principal: str) -> list[Any]:
    return [s for s in policy_statements(tf, principal) if not s.is_platform]


PRINCIPALS = {
    "api": lambda: package_modules("services.api"),
    "launcher": lambda: package_modules("services.launcher"),
    "reaper": lambda: package_modules("services.reaper"),
    "worker": lambda: package_modules("worker"),
}


@pytest.mark.parametrize("principal", sorted(PRINCIPALS))
def test_each_principal_is_allowed_exactly_the_aws_actions_its_code_calls(
    tf: TerraformConfig, principal: str
) -> None:
    called = aws_actions(PRINCIPALS[principal]())
    assert called, f"no AWS call found for {principal}: the scan is broken"
    allowed = set().union(*(s.actions for s in _identity_statements(tf, principal)))
    assert set(called) - allowed == set(), f"{principal} calls actions it is not allowed"
    assert allowed - set(called) == set(), f"{principal} is allowed actions its code never calls"


@pytest.mark.parametrize("principal", sorted(PRINCIPALS))
def test_table_actions_are_allowed_on_the_table_the_module_uses(tf: TerraformConfig, principal: str) -> None:
    statements = _identity_statements(tf, principal)
    for action, modules in aws_actions(PRINCIPALS[principal]()).items():
        if not action.startswith("dynamodb:"):
            continue
        for module in modules:
            table = TABLE_MODULES.get(module, "${aws_dynamodb_table.jobs.arn}")
            granted = [s for s in statements if action in s.actions and any(table in r for r in s.resources)]
            assert granted, f"{principal}: {action} from {module} is not allowed on {table}"


def test_platform_statements_grant_only_what_the_platform_uses(tf: TerraformConfig) -> None:
    platform_actions = {
        "logs:CreateLogStream", "logs:PutLogEvents",  # function logs, CW agent
        "xray:PutTraceSegments", "xray:PutTelemetryRecords",  # active tracing
        "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",  # the event source mapping reads the stream
        "sqs:SendMessage",  # the mapping's on-failure destination
    }  # fmt: skip
    for principal in PRINCIPALS:
        for statement in policy_statements(tf, principal):
            if statement.is_platform:
                assert statement.actions <= platform_actions, (principal, statement.sid)


def test_handler_strings_resolve_to_functions_in_the_packages(tf: TerraformConfig) -> None:
    for service in FUNCTIONS:
        handler = tf.locals["functions"][service]["handler"]
        module_name, _, function = handler.rpartition(".")
        path = module_path(module_name)
        assert path is not None, f"{handler}: no module {module_name}"
        tree = ast.parse(path.read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        assert function in defined, f"{handler}: {module_name} defines no {function}"


def _tf_table(table: dict[str, Any]) -> dict[str, Any]:
    """A Terraform aws_dynamodb_table in the shape of jobs/tables.py (CreateTable arguments)."""
    key_schema = [{"AttributeName": attr(table, "hash_key"), "KeyType": "HASH"}]
    if "range_key" in table:
        key_schema.append({"AttributeName": attr(table, "range_key"), "KeyType": "RANGE"})
    shape: dict[str, Any] = {
        "KeySchema": key_schema,
        "AttributeDefinitions": sorted(
            (
                {"AttributeName": attr(a, "name"), "AttributeType": attr(a, "type")}
                for a in blocks(table, "attribute")
            ),
            key=lambda a: a["AttributeName"],
        ),
        "BillingMode": attr(table, "billing_mode"),
    }
    indexes = []
    for index in blocks(table, "global_secondary_index"):
        index_keys = [{"AttributeName": attr(index, "hash_key"), "KeyType": "HASH"}]
        if "range_key" in index:
            index_keys.append({"AttributeName": attr(index, "range_key"), "KeyType": "RANGE"})
        projection: dict[str, Any] = {"ProjectionType": attr(index, "projection_type")}
        if "non_key_attributes" in index:
            projection["NonKeyAttributes"] = attr(index, "non_key_attributes")
        indexes.append({"IndexName": attr(index, "name"), "KeySchema": index_keys, "Projection": projection})
    if indexes:
        shape["GlobalSecondaryIndexes"] = sorted(indexes, key=lambda i: i["IndexName"])
    if attr(table, "stream_enabled", False):
        shape["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": attr(table, "stream_view_type"),
        }
    return shape


def _code_table(definition: dict[str, Any]) -> dict[str, Any]:
    shape = dict(definition)
    shape["AttributeDefinitions"] = sorted(
        definition["AttributeDefinitions"], key=lambda a: a["AttributeName"]
    )
    if "GlobalSecondaryIndexes" in definition:
        shape["GlobalSecondaryIndexes"] = sorted(
            definition["GlobalSecondaryIndexes"], key=lambda i: i["IndexName"]
        )
    return shape


def test_tables_equal_the_code_definitions(tf: TerraformConfig) -> None:
    jobs = tf.resource("aws_dynamodb_table", "jobs")
    assert _tf_table(jobs) == _code_table(JOBS_TABLE)
    ttl = blocks(jobs, "ttl")[0]
    assert attr(ttl, "attribute_name") == JOBS_TTL_ATTRIBUTE and attr(ttl, "enabled") is True
    assert _tf_table(tf.resource("aws_dynamodb_table", "api_keys")) == _code_table(API_KEYS_TABLE)


def test_the_reaper_schedule_follows_its_definition(tf: TerraformConfig) -> None:
    from local_cloud.scheduler import scheduled_event
    from services.reaper import schedule

    rule = tf.resource("aws_cloudwatch_event_rule", "reaper")
    assert attr(rule, "name") == schedule.rule_name("${var.project_name}")
    expression = attr(rule, "schedule_expression")
    assert schedule.rate_expression(1) in expression
    assert schedule.rate_expression(7).replace("7", "${var.reaper_schedule_minutes}") in expression
    variable = tf.variables["reaper_schedule_minutes"]
    assert attr(variable, "default") == schedule.DEFAULT_INTERVAL_MINUTES
    # No input on the target: the reaper gets EventBridge's own Scheduled Event, which is what
    # the local cloud's scheduler sends it.
    target = tf.resource("aws_cloudwatch_event_target", "reaper")
    assert not {"input", "input_path", "input_transformer"} & set(target)
    event = scheduled_event("arn:aws:events:us-east-1:123456789012:rule/x-reaper", "us-east-1")
    assert (event["source"], event["detail-type"]) == ("aws.events", "Scheduled Event")


def test_the_local_stream_poller_delivers_as_the_event_source_mapping(tf: TerraformConfig) -> None:
    import inspect

    from local_cloud.stack import StackOptions
    from local_cloud.stream_poller import StreamPoller

    mapping = tf.resource("aws_lambda_event_source_mapping", "jobs_stream")
    bisect = inspect.signature(StreamPoller).parameters["bisect_batch_on_function_error"].default
    assert attr(mapping, "bisect_batch_on_function_error") is bisect is True
    options = StackOptions()
    assert attr(tf.variables["launcher_batch_size"], "default") == options.batch_size
    assert attr(tf.variables["launcher_maximum_retry_attempts"], "default") == options.maximum_retry_attempts


def test_generated_files_are_current() -> None:
    """Filter criteria and routes: Terraform reads these files; run
    `python -m build_tools.generate` when this fails."""
    for name, content in generated_files().items():
        assert (TERRAFORM_DIR / "generated" / name).read_text() == content, name


def test_stream_filters_equal_the_launchers_and_routes_cover_the_api() -> None:
    from services.launcher.filters import filter_criteria

    patterns = json.loads((TERRAFORM_DIR / "generated" / "launcher_filters.json").read_text())
    assert [json.loads(f["Pattern"]) for f in filter_criteria()["Filters"]] == patterns
    routes = set(json.loads((TERRAFORM_DIR / "generated" / "api_routes.json").read_text()))
    assert {"POST /jobs", "GET /jobs/{job_id}"} <= routes  # what deployed clients call


def test_generated_routes_are_the_ones_the_app_serves() -> None:
    """Backstop: the route keys equal what the event handler declares after registration
    (its OpenAPI paths), not only what the table says."""
    from services.api.handler import openapi_json

    served = {
        f"{method.upper()} {path}"
        for path, item in json.loads(openapi_json())["paths"].items()
        for method in item
    }
    assert served == set(json.loads((TERRAFORM_DIR / "generated" / "api_routes.json").read_text()))


def _emitted_metric_names() -> set[str]:
    """String constants the code passes as metric names (Powertools and PutMetricData)."""
    names: set[str] = set()
    for package in ("services", "control_plane", "worker", "jobs"):
        for module in package_modules(package):
            path = module_path(module)
            assert path is not None
            tree = ast.parse(path.read_text())
            constants = {
                t.id: n.value.value
                for n in ast.walk(tree)
                if isinstance(n, ast.Assign)
                and isinstance(n.value, ast.Constant)
                and isinstance(n.value.value, str)
                for t in n.targets
                if isinstance(t, ast.Name)
            }
            # By convention the code names its metrics in METRIC_* constants or a `Metric` enum.
            names.update(v for k, v in constants.items() if k.startswith("METRIC_"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name == "Metric":
                    names.update(
                        n.value.value
                        for n in node.body
                        if isinstance(n, ast.Assign)
                        and isinstance(n.value, ast.Constant)
                        and isinstance(n.value.value, str)
                    )
            for node in ast.walk(tree):
                value: ast.AST | None = None
                if isinstance(node, ast.keyword) and node.arg == "name":
                    value = node.value
                elif isinstance(node, ast.Dict):
                    for key, item in zip(node.keys, node.values, strict=True):
                        if isinstance(key, ast.Constant) and key.value == "MetricName":
                            value = item
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    names.add(value.value)
                elif isinstance(value, ast.Name) and value.id in constants:
                    names.add(constants[value.id])
    return names


def test_dashboard_and_alarms_use_metric_names_the_code_emits(tf: TerraformConfig) -> None:
    emitted = _emitted_metric_names()
    used = set(tf.locals["service_metrics"].values()) | set(tf.locals["reaper_action_metrics"])
    assert used - emitted == set()
    counted_from_logs = _log_filter_metrics(tf)
    for name, alarm in tf.locals["service_alarms"].items():
        if alarm["namespace"] == "${local.ns}":
            metric = alarm["metric"]
            key = re.fullmatch(r"\$\{local\.(service_metrics|log_metrics)\.(\w+)\}", metric)
            assert key, name
            value = tf.locals[key.group(1)][key.group(2)]
            assert value in (emitted if key.group(1) == "service_metrics" else counted_from_logs), name


def _log_filter_metrics(tf: TerraformConfig) -> set[str]:
    """The metrics the log metric filters count (by name)."""
    names = set()
    for body in tf.resources.get("aws_cloudwatch_log_metric_filter", {}).values():
        for transformation in blocks(body, "metric_transformation"):
            key = re.fullmatch(r"\$\{local\.log_metrics\.(\w+)\}", attr(transformation, "name"))
            assert key, "a log metric's name is one of local.log_metrics"
            names.add(tf.locals["log_metrics"][key.group(1)])
    return names


def test_the_unreadable_item_filter_counts_the_line_the_code_logs(tf: TerraformConfig) -> None:
    """A reworded log line would silently stop the alarm: the filter's quoted term must be
    the message jobs/store.py logs, on every function's log group."""
    body = tf.resource("aws_cloudwatch_log_metric_filter", "unreadable_items")
    assert attr(body, "pattern") == '\\"${local.unreadable_item_line}\\"'
    assert tf.locals["unreadable_item_line"] == UNREADABLE_ITEM
    assert attr(body, "for_each") == "${local.functions}"
    assert attr(body, "log_group_name") == "${aws_cloudwatch_log_group.functions[each.key].name}"
    assert _log_filter_metrics(tf) == set(tf.locals["log_metrics"].values())
