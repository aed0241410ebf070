"""The Terraform module, read offline: it parses, declares what the seed and the issue
promise, and configures the resources safely."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import hcl2
import pytest
from terraform_config import TERRAFORM_DIR, TerraformConfig, attr, blocks, policy_statements

from jobs.crypto import CONTEXT_PURPOSE

SEED_VARIABLE_DEFAULTS = {
    "aws_region": "us-east-1",
    "project_name": "seren-replication",
    "dynamodb_table_name": "replication-jobs",
    "worker_instance_type": "c5.2xlarge",
    "worker_iam_role_name": "seren-replication-worker",
}
EXTRA_VARIABLE_DEFAULTS = {
    "max_concurrent_jobs": 10,
    "job_retention_days": 30,
    "allowed_target_suffixes": ["serendb.com"],
    "lambda_architecture": "arm64",
    "log_retention_days": 7,
    "alarm_email": "",
}
EXTRA_VARIABLES = {
    "vpc_id",
    "subnet_ids",
    "worker_root_volume_size_gb",
    "heartbeat_interval_seconds",
    "heartbeat_timeout_seconds",
    "provisioning_grace_seconds",
    "reaper_schedule_minutes",
}
SEED_OUTPUTS = {"api_endpoint", "dynamodb_table_name", "lambda_function_name", "worker_iam_role_name"}
EXTRA_OUTPUTS = {
    "launcher_function_name",
    "reaper_function_name",
    "dashboard_url",
    "dlq_url",
    "launch_template_id",
    "kms_key_arn",
}
FUNCTIONS = {
    "api": "services.api.handler.lambda_handler",
    "launcher": "services.launcher.handler.lambda_handler",
    "reaper": "services.reaper.handler.lambda_handler",
}


def test_every_file_parses_and_the_module_files_exist() -> None:
    files = sorted(TERRAFORM_DIR.glob("*.tf"))
    assert {"versions.tf", "variables.tf", "outputs.tf"} <= {f.name for f in files}
    for path in files:
        with path.open() as handle:
            assert hcl2.load(handle), path
    assert (TERRAFORM_DIR / "terraform.tfvars.example").is_file()


def test_versions_pin_terraform_and_the_aws_provider(tf: TerraformConfig) -> None:
    (settings,) = tf.settings
    assert attr(settings, "required_version") == ">= 1.6"
    aws = attr(blocks(settings, "required_providers")[0], "aws")
    assert aws["source"] == "hashicorp/aws"
    assert re.fullmatch(r"~> 5\.\d+", aws["version"])


def test_seed_variables_keep_the_seed_defaults(tf: TerraformConfig) -> None:
    for name, default in {**SEED_VARIABLE_DEFAULTS, **EXTRA_VARIABLE_DEFAULTS}.items():
        assert attr(tf.variables[name], "default") == default, name
    assert "default" not in tf.variables["worker_ami_id"]
    assert set(tf.variables) >= EXTRA_VARIABLES


def test_every_variable_is_typed_and_described(tf: TerraformConfig) -> None:
    for name, body in tf.variables.items():
        assert attr(body, "type", None), f"{name} has no type"
        assert len(attr(body, "description", "")) > 10, f"{name} has no description"


def test_outputs_include_the_seeds_and_ours(tf: TerraformConfig) -> None:
    assert set(tf.outputs) >= SEED_OUTPUTS | EXTRA_OUTPUTS
    assert (
        attr(tf.outputs["lambda_function_name"], "value")
        == "${aws_lambda_function.coordinator.function_name}"
    )
    for name, body in tf.outputs.items():
        assert attr(body, "description", ""), f"output {name} has no description"


def test_tfvars_example_sets_declared_variables_including_the_required_ones(tf: TerraformConfig) -> None:
    with (TERRAFORM_DIR / "terraform.tfvars.example").open() as handle:
        example = hcl2.load(handle)
    assert set(example) <= set(tf.variables)
    required = {name for name, body in tf.variables.items() if "default" not in body}
    assert required <= set(example)
    assert {
        k: example[k][0] if isinstance(example[k], list) else example[k] for k in SEED_VARIABLE_DEFAULTS
    } == (SEED_VARIABLE_DEFAULTS)


def test_functions_run_python_with_tracing_and_their_handler(tf: TerraformConfig) -> None:
    assert {key: f["handler"] for key, f in tf.locals["functions"].items()} == FUNCTIONS
    function = tf.resource("aws_lambda_function", "service")
    assert attr(function, "for_each") == (
        '${{for key , function in local.functions : key => function if key != "api"}}'
    )
    assert attr(function, "handler") == "${each.value.handler}"
    assert attr(function, "publish") is True
    assert attr(function, "runtime") == "${var.lambda_runtime}"
    assert attr(function, "architectures") == ["${var.lambda_architecture}"]
    assert attr(blocks(function, "tracing_config")[0], "mode") == "Active"
    assert attr(function, "reserved_concurrent_executions") == "${each.value.reserved}"
    for key in FUNCTIONS:
        reserved = tf.locals["functions"][key]["reserved"]
        assert reserved == f"${{var.{key}_reserved_concurrency}}"
        assert attr(tf.variables[f"{key}_reserved_concurrency"], "validation")
        assert tf.locals["functions"][key]["package"] == f"${{local.package_dir}}/{key}.zip"
    assert attr(function, "source_code_hash") == "${filebase64sha256(each.value.package)}"
    assert attr(tf.variables["lambda_runtime"], "default") in {"python3.12", "python3.13"}


def test_the_api_function_is_the_seeds_address_defined_as_the_others_are(tf: TerraformConfig) -> None:
    """The seed's update command targets aws_lambda_function.coordinator; the API function is
    that resource, set argument for argument as the keyed one (its values by its key)."""

    def arguments(name: str) -> dict[str, Any]:
        body = tf.resource("aws_lambda_function", name)
        return {k: v for k, v in body.items() if k != "for_each" and not k.startswith("__")}

    as_the_api = json.dumps(arguments("service"))
    as_the_api = as_the_api.replace("each.value.", 'local.functions[\\"api\\"].').replace(
        "[each.key]", '[\\"api\\"]'
    )
    assert arguments("coordinator") == json.loads(as_the_api)
    moved = tf.moved
    assert {
        "from": '${aws_lambda_function.service["api"]}',
        "to": "${aws_lambda_function.coordinator}",
    } in moved
    resources = tf.locals["function_resources"]
    assert "aws_lambda_function.service," in resources and "aws_lambda_function.coordinator" in resources


def test_the_api_alias_follows_latest_and_the_others_their_newest_version(tf: TerraformConfig) -> None:
    """A targeted apply of the API function never reaches the alias (a dependent), so the
    alias the integration invokes must serve the function's newest code by itself."""
    alias = tf.resource("aws_lambda_alias", "live")
    assert attr(alias, "for_each") == "${local.functions}"
    assert attr(alias, "function_version") == (
        '${each.key == "api" ? "$LATEST" : local.function_resources[each.key].version}'
    )
    permission = tf.resource("aws_lambda_permission", "api_gateway")
    assert attr(permission, "function_name") == "${aws_lambda_function.coordinator.function_name}"
    assert attr(permission, "qualifier") == '${aws_lambda_alias.live["api"].name}'


def test_log_groups_keep_logs_for_the_configured_days(tf: TerraformConfig) -> None:
    groups = tf.resources["aws_cloudwatch_log_group"]
    assert {"functions", "workers", "api_access"} <= set(groups)
    for body in groups.values():
        assert attr(body, "retention_in_days") == "${var.log_retention_days}"
        assert attr(body, "kms_key_id")


def test_worker_launch_template_is_locked_down(tf: TerraformConfig) -> None:
    template = tf.resource("aws_launch_template", "worker")
    assert attr(template, "image_id") == "${var.worker_ami_id}"
    assert attr(template, "instance_initiated_shutdown_behavior") == "terminate"
    metadata = blocks(template, "metadata_options")[0]
    assert attr(metadata, "http_tokens") == "required"
    assert attr(metadata, "http_put_response_hop_limit") == 1
    ebs = blocks(blocks(template, "block_device_mappings")[0], "ebs")[0]
    assert attr(ebs, "volume_type") == "gp3"
    assert attr(ebs, "encrypted") is True
    assert attr(ebs, "volume_size") == "${var.worker_root_volume_size_gb}"
    assert (
        attr(blocks(template, "iam_instance_profile")[0], "arn") == "${aws_iam_instance_profile.worker.arn}"
    )
    tagged = {attr(spec, "resource_type") for spec in blocks(template, "tag_specifications")}
    assert {"instance", "volume"} <= tagged


def test_worker_security_group_has_no_ingress_and_narrow_egress(tf: TerraformConfig) -> None:
    group = tf.resource("aws_security_group", "worker")
    assert "ingress" not in group and "egress" not in group
    assert "aws_vpc_security_group_ingress_rule" not in tf.resources
    egress = tf.resources["aws_vpc_security_group_egress_rule"]
    assert attr(egress["worker_https"], "from_port") == attr(egress["worker_https"], "to_port") == 443
    assert attr(egress["worker_postgresql"], "from_port") == "${each.value[1]}"
    assert attr(tf.variables["database_ports"], "default") == [5432]
    for rule in egress.values():
        assert attr(rule, "ip_protocol") == "tcp"


def test_worker_role_and_profile_are_named_by_the_variable(tf: TerraformConfig) -> None:
    assert attr(tf.resource("aws_iam_role", "worker"), "name") == "${var.worker_iam_role_name}"
    assert attr(tf.resource("aws_iam_instance_profile", "worker"), "name") == "${var.worker_iam_role_name}"


def test_stream_mapping_retries_bisects_and_dead_letters(tf: TerraformConfig) -> None:
    mapping = tf.resource("aws_lambda_event_source_mapping", "jobs_stream")
    assert attr(mapping, "event_source_arn") == "${aws_dynamodb_table.jobs.stream_arn}"
    assert attr(mapping, "function_name") == '${aws_lambda_alias.live["launcher"].arn}'
    assert attr(mapping, "bisect_batch_on_function_error") is True
    assert attr(mapping, "function_response_types") == ["ReportBatchItemFailures"]
    assert attr(mapping, "maximum_retry_attempts") == "${var.launcher_maximum_retry_attempts}"
    assert attr(mapping, "maximum_record_age_in_seconds") == "${var.launcher_maximum_record_age_seconds}"
    assert attr(mapping, "batch_size") == "${var.launcher_batch_size}"
    on_failure = blocks(blocks(mapping, "destination_config")[0], "on_failure")[0]
    assert attr(on_failure, "destination_arn") == "${aws_sqs_queue.launcher_dlq.arn}"
    assert attr(tf.resource("aws_sqs_queue", "launcher_dlq"), "sqs_managed_sse_enabled") is True
    criteria = blocks(mapping, "filter_criteria")[0]
    assert "filter" in str(criteria)  # a dynamic block over local.launcher_filter_patterns
    assert "generated/launcher_filters.json" in tf.locals["launcher_filter_patterns"]


def test_reaper_runs_on_a_schedule(tf: TerraformConfig) -> None:
    rule = tf.resource("aws_cloudwatch_event_rule", "reaper")
    assert "rate(" in attr(rule, "schedule_expression")
    target = tf.resource("aws_cloudwatch_event_target", "reaper")
    assert attr(target, "arn") == '${aws_lambda_alias.live["reaper"].arn}'
    permission = tf.resource("aws_lambda_permission", "reaper_schedule")
    assert attr(permission, "principal") == "events.amazonaws.com"


def test_http_api_uses_payload_2_with_throttling_and_json_access_logs(tf: TerraformConfig) -> None:
    integration = tf.resource("aws_apigatewayv2_integration", "api")
    assert attr(integration, "payload_format_version") == "2.0"
    assert attr(integration, "integration_uri") == '${aws_lambda_alias.live["api"].invoke_arn}'
    stage = tf.resource("aws_apigatewayv2_stage", "default")
    throttle = blocks(stage, "default_route_settings")[0]
    assert attr(throttle, "throttling_rate_limit") and attr(throttle, "throttling_burst_limit")
    access_format = attr(blocks(stage, "access_log_settings")[0], "format")
    assert access_format.startswith("${jsonencode(")
    assert "generated/api_routes.json" in tf.locals["api_route_keys"]


def test_tables_are_encrypted_and_recoverable(tf: TerraformConfig) -> None:
    for name in ("jobs", "api_keys"):
        table = tf.resource("aws_dynamodb_table", name)
        assert attr(table, "billing_mode") == "PAY_PER_REQUEST"
        assert attr(blocks(table, "point_in_time_recovery")[0], "enabled") is True
        encryption = blocks(table, "server_side_encryption")[0]
        assert attr(encryption, "enabled") is True
        assert attr(encryption, "kms_key_arn") == "${aws_kms_key.data.arn}"


def test_keys_rotate(tf: TerraformConfig) -> None:
    for body in tf.resources["aws_kms_key"].values():
        if attr(body, "key_usage", None) == "GENERATE_VERIFY_MAC":
            continue  # KMS rotates no HMAC key
        assert attr(body, "enable_key_rotation") is True


def test_credentials_key_lets_only_the_api_encrypt_and_only_workers_decrypt(tf: TerraformConfig) -> None:
    statements = policy_statements(tf, "credentials_key")
    crypto = [s for s in statements if s.actions & {"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*"}]
    by_action = {action: s for s in crypto for action in s.actions}
    assert set(by_action) == {"kms:Encrypt", "kms:Decrypt"}
    assert by_action["kms:Encrypt"].principals == ("${aws_iam_role.api.arn}",)
    assert by_action["kms:Decrypt"].principals == ("${aws_iam_role.worker.arn}",)
    for statement in crypto:
        assert ("StringEquals", "kms:EncryptionContext:purpose", (CONTEXT_PURPOSE,)) in statement.conditions
        assert ("Null", "kms:EncryptionContext:job_id", ("false",)) in statement.conditions
    administration = [s for s in statements if s not in crypto]
    for statement in administration:
        assert not any(
            a.startswith(("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")) for a in statement.actions
        )
        assert "kms:*" not in statement.actions


def test_dashboard_and_alarms_cover_what_the_issue_lists(tf: TerraformConfig) -> None:
    widgets = tf.locals["dashboard_widgets"]
    titles = " | ".join(w["properties"]["title"].lower() for w in widgets)
    for topic in (
        "outcome",
        "active and queued",
        "launch latency",
        "job duration",
        "failures by reason",
        "errors and throttles",
        "duration",
        "iterator age",
        "dlq",
        "running worker instances",
        "reaper actions",
    ):
        assert topic in titles, topic
    (alarm,) = tf.resources["aws_cloudwatch_metric_alarm"].values()
    assert attr(alarm, "for_each") == "${local.alarms}"
    assert attr(alarm, "alarm_actions") == ["${aws_sns_topic.alarms.arn}"]
    assert tf.locals["alarms"].replace(" ", "") == "${merge(local.function_alarms,local.service_alarms)}"
    assert {
        "dlq_not_empty",
        "dlq_oldest_message",
        "iterator_age",
        "stale_jobs_reaped",
        "orphans_found",
        "api_5xx",
        "reaper_not_running",
        "unreadable_items",
    } <= set(tf.locals["service_alarms"])
    for metric in ('"Errors"', '"Throttles"'):  # one alarm of each per function
        assert f'"metric": {metric}' in tf.locals["function_alarms"].replace("'", '"')
    stopped = tf.locals["service_alarms"]["reaper_not_running"]
    assert (stopped["metric"], stopped["missing"], stopped["periods"]) == ("Invocations", "breaching", 3)
    assert stopped["comparison"] == "LessThanThreshold"
    subscription = tf.resource("aws_sns_topic_subscription", "alarm_email")
    assert attr(subscription, "count") == '${var.alarm_email == "" ? 0 : 1}'
    assert attr(tf.resource("aws_sns_topic", "alarms"), "kms_master_key_id")


def test_run_instances_is_bound_to_the_template_and_the_project_tag(tf: TerraformConfig) -> None:
    statements = policy_statements(tf, "launch_workers")
    on_instances = [
        s
        for s in statements
        if "ec2:RunInstances" in s.actions and any("instance/" in r for r in s.resources)
    ]
    (statement,) = on_instances
    variables = {variable for _, variable, _ in statement.conditions}
    assert "ec2:LaunchTemplate" in variables
    assert any(v.startswith("aws:RequestTag/") for v in variables)
    (terminate,) = [s for s in statements if "ec2:TerminateInstances" in s.actions]
    assert any(v.startswith("ec2:ResourceTag/") for _, v, _ in terminate.conditions)
    (pass_role,) = [s for s in statements if "iam:PassRole" in s.actions]
    assert pass_role.resources == ("${aws_iam_role.worker.arn}",)


def test_run_instances_takes_the_image_from_the_template_not_one_ami(tf: TerraformConfig) -> None:
    """During an AMI roll-out, jobs launched from an older template version still start."""
    statements = policy_statements(tf, "launch_workers")
    on_images = [s for s in statements if any(":image/" in r for r in s.resources)]
    (statement,) = on_images
    assert statement.resources == ("arn:${local.partition}:ec2:${var.aws_region}::image/*",)
    assert ("ArnEquals", "ec2:LaunchTemplate", ("${aws_launch_template.worker.arn}",)) in statement.conditions
    assert ("Bool", "ec2:IsLaunchTemplateResource", ("true",)) in statement.conditions
    assert not any("worker_ami_id" in r for s in statements for r in s.resources)


def test_no_identity_policy_grants_wildcard_actions(tf: TerraformConfig) -> None:
    for name in ("api", "launcher", "reaper", "worker"):
        for statement in policy_statements(tf, name):
            assert statement.effect == "Allow"
            assert not any(a == "*" or a.endswith(":*") for a in statement.actions), (name, statement.sid)


def test_every_checkov_skip_names_a_check_and_gives_a_reason() -> None:
    skips = []
    for path in TERRAFORM_DIR.glob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                match = re.search(r"checkov:skip=(CKV2?_AWS_\d+):(.{20,})", line)
                assert match, f"{path.name}: skip without a check id and a reason: {line.strip()}"
                skips.append(match.group(1))
    assert skips  # the skips are inline, next to what they excuse


@pytest.mark.slow
def test_checkov_reports_no_failed_check() -> None:
    checkov = shutil.which("checkov") or str(__import__("sys").prefix + "/bin/checkov")
    result = subprocess.run(
        [checkov, "-d", str(TERRAFORM_DIR), "--skip-download", "--quiet", "--compact", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        (check["check_id"], check["resource"])
        for r in reports
        for check in r.get("results", {}).get("failed_checks", [])
    ]
    assert failed == []
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    assert sum(r["summary"]["passed"] for r in reports) > 100


def test_readme_documents_the_commands_and_every_output(tf: TerraformConfig) -> None:
    readme = (TERRAFORM_DIR / "README.md").read_text()
    for command in (
        "terraform apply -target=aws_lambda_function.coordinator",
        "backend.tf.example",
        "Migrating from the seed's stack",
        "Drain jobs first",
        "make package",
        "seren-remote admin create-key",
        "prepare-worker-image.sh",
        "Idempotency-Key",
    ):
        assert command in readme, command
    for name in tf.outputs:
        assert f"`{name}`" in readme, name
    for name in SEED_VARIABLE_DEFAULTS:
        assert name in readme, name
