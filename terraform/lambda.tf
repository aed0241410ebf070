# The three functions, defined once in local.functions: the API as
# aws_lambda_function.coordinator (the seed's address), the launcher and the reaper as
# aws_lambda_function.service[key]. Code comes from `make package` (build/<key>.zip); each
# zip holds the project's code and its locked dependencies built for
# var.lambda_architecture. Every change publishes a version. The stream mapping and the
# schedule invoke the `live` alias on the launcher's and the reaper's newest version, the API
# integration the API's `live` alias, which follows $LATEST (see the alias): rolling back is
# moving an alias to an earlier version.

locals {
  functions = {
    api = {
      name        = local.api_function_name
      package     = "${local.package_dir}/api.zip"
      description = "Replication jobs HTTP API"
      handler     = "services.api.handler.lambda_handler"
      memory_size = 512
      # Below the integration's timeout (api_gateway.tf), so that a slow request ends as the
      # function's own error, not as the gateway's 503 while the function still runs.
      timeout  = local.api_integration_timeout_seconds - 5
      reserved = var.api_reserved_concurrency
    }
    launcher = {
      name        = local.launcher_function_name
      package     = "${local.package_dir}/launcher.zip"
      description = "Launches workers for new jobs from the jobs stream"
      handler     = "services.launcher.handler.lambda_handler"
      memory_size = 512
      timeout     = 120
      reserved    = var.launcher_reserved_concurrency
    }
    reaper = {
      name        = local.reaper_function_name
      package     = "${local.package_dir}/reaper.zip"
      description = "Safety net: stale heartbeats, deadlines, stuck launches, orphan instances, queued jobs"
      handler     = "services.reaper.handler.lambda_handler"
      memory_size = 512
      timeout     = 300
      # One reaper at a time is enough (overlapping runs only repeat each other's work), but
      # an account with a low concurrency limit cannot reserve any: -1 leaves it unreserved.
      reserved = var.reaper_reserved_concurrency
    }
  }

  # Kept apart from local.functions so that the log groups, which the roles' policies name,
  # do not depend on the roles.
  function_roles = {
    api      = aws_iam_role.api.arn
    launcher = aws_iam_role.launcher.arn
    reaper   = aws_iam_role.reaper.arn
  }
  function_environments = {
    api      = local.api_environment
    launcher = local.launcher_environment
    reaper   = local.reaper_environment
  }
}

resource "aws_cloudwatch_log_group" "functions" {
  for_each = local.functions

  name = "/aws/lambda/${each.value.name}"
  # checkov:skip=CKV_AWS_338:Operational logs are kept var.log_retention_days (7 by default, as the seed specifies); nothing in them needs a year.
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

# The API function keeps the seed's address, aws_lambda_function.coordinator, which the
# seed's "Updating Lambda Code" targets; the launcher and the reaper are
# aws_lambda_function.service[key]. The two blocks set the same arguments from
# local.functions, the API's by its key (tests/infra checks that they stay the same).
resource "aws_lambda_function" "coordinator" {
  # checkov:skip=CKV_AWS_117:The functions call only AWS APIs; a VPC would add NAT or endpoints and protect nothing.
  # checkov:skip=CKV_AWS_272:Code signing needs a signing profile outside this module; the zip is built reproducibly and its sha256 is pinned by source_code_hash.
  # checkov:skip=CKV_AWS_116:No function is invoked asynchronously with events worth keeping: the api synchronously by API Gateway (the client gets the error), the launcher by the stream mapping (whose on-failure destination is the DLQ), the reaper by a schedule whose next run redoes a failed one.
  # checkov:skip=CKV_AWS_173:The environments hold names, ids and ARNs only, no secrets; Lambda encrypts them at rest with its service key.
  function_name                  = local.functions["api"].name
  description                    = local.functions["api"].description
  role                           = local.function_roles["api"]
  handler                        = local.functions["api"].handler
  runtime                        = var.lambda_runtime
  architectures                  = [var.lambda_architecture]
  memory_size                    = local.functions["api"].memory_size
  timeout                        = local.functions["api"].timeout
  reserved_concurrent_executions = local.functions["api"].reserved
  filename                       = local.functions["api"].package
  source_code_hash               = filebase64sha256(local.functions["api"].package)
  publish                        = true

  environment {
    variables = local.function_environments["api"]
  }

  tracing_config {
    mode = "Active"
  }

  dynamic "snap_start" {
    for_each = var.lambda_snap_start ? ["PublishedVersions"] : []
    content {
      apply_on = snap_start.value
    }
  }

  depends_on = [
    aws_cloudwatch_log_group.functions,
    aws_iam_role_policy.api,
    aws_iam_role_policy.launcher,
    aws_iam_role_policy.reaper,
  ]

  lifecycle {
    precondition {
      condition     = local.package_manifest.architecture == var.lambda_architecture && "python${local.package_manifest.python_version}" == var.lambda_runtime
      error_message = "The zips in the package directory were built for another architecture or Python: run `make package ARCH=<lambda_architecture>`."
    }
    precondition {
      condition     = var.heartbeat_timeout_seconds >= 2 * var.heartbeat_interval_seconds
      error_message = "heartbeat_timeout_seconds must be at least twice heartbeat_interval_seconds: a single late beat must not fail a job."
    }
  }
}

resource "aws_lambda_function" "service" {
  for_each = { for key, function in local.functions : key => function if key != "api" }

  # checkov:skip=CKV_AWS_117:The functions call only AWS APIs; a VPC would add NAT or endpoints and protect nothing.
  # checkov:skip=CKV_AWS_272:Code signing needs a signing profile outside this module; the zip is built reproducibly and its sha256 is pinned by source_code_hash.
  # checkov:skip=CKV_AWS_116:No function is invoked asynchronously with events worth keeping: the api synchronously by API Gateway (the client gets the error), the launcher by the stream mapping (whose on-failure destination is the DLQ), the reaper by a schedule whose next run redoes a failed one.
  # checkov:skip=CKV_AWS_173:The environments hold names, ids and ARNs only, no secrets; Lambda encrypts them at rest with its service key.
  function_name                  = each.value.name
  description                    = each.value.description
  role                           = local.function_roles[each.key]
  handler                        = each.value.handler
  runtime                        = var.lambda_runtime
  architectures                  = [var.lambda_architecture]
  memory_size                    = each.value.memory_size
  timeout                        = each.value.timeout
  reserved_concurrent_executions = each.value.reserved
  filename                       = each.value.package
  source_code_hash               = filebase64sha256(each.value.package)
  publish                        = true

  environment {
    variables = local.function_environments[each.key]
  }

  tracing_config {
    mode = "Active"
  }

  dynamic "snap_start" {
    for_each = var.lambda_snap_start ? ["PublishedVersions"] : []
    content {
      apply_on = snap_start.value
    }
  }

  depends_on = [
    aws_cloudwatch_log_group.functions,
    aws_iam_role_policy.api,
    aws_iam_role_policy.launcher,
    aws_iam_role_policy.reaper,
  ]

  lifecycle {
    precondition {
      condition     = local.package_manifest.architecture == var.lambda_architecture && "python${local.package_manifest.python_version}" == var.lambda_runtime
      error_message = "The zips in the package directory were built for another architecture or Python: run `make package ARCH=<lambda_architecture>`."
    }
    precondition {
      condition     = var.heartbeat_timeout_seconds >= 2 * var.heartbeat_interval_seconds
      error_message = "heartbeat_timeout_seconds must be at least twice heartbeat_interval_seconds: a single late beat must not fail a job."
    }
  }
}

# Deployments made while the API function was one of the keyed ones keep their function.
moved {
  from = aws_lambda_function.service["api"]
  to   = aws_lambda_function.coordinator
}

locals {
  function_resources = merge(aws_lambda_function.service, { api = aws_lambda_function.coordinator })
}

resource "aws_lambda_alias" "live" {
  for_each = local.functions

  name          = "live"
  description   = "The version the API, the stream mapping and the schedule invoke"
  function_name = local.function_resources[each.key].function_name
  # The API's alias follows $LATEST. `terraform apply -target=aws_lambda_function.coordinator`
  # (the seed's update command) applies the function and what it depends on, never this
  # alias, so an alias pinned to the version would keep serving the old code; following
  # $LATEST it serves the new code once the function is updated. Each update still
  # publishes a version to roll back to. The launcher and the reaper stay pinned.
  function_version = each.key == "api" ? "$LATEST" : local.function_resources[each.key].version
}

# The reaper is invoked asynchronously by its schedule: Lambda's own retries (two by default)
# would run it again late, overlapping the next scheduled run.
resource "aws_lambda_function_event_invoke_config" "reaper" {
  function_name                = aws_lambda_function.service["reaper"].function_name
  qualifier                    = aws_lambda_alias.live["reaper"].name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60 * var.reaper_schedule_minutes
}

# ---- the jobs stream drives the launcher ------------------------------------------------------

resource "aws_sqs_queue" "launcher_dlq" {
  name                      = "${var.project_name}-launcher-dlq"
  message_retention_seconds = 1209600
  # SQS-managed keys: the event source mapping sends with the launcher's role, and a
  # customer key would need kms:GenerateDataKey on it for nothing the queue holds (record
  # pointers: shard, sequence numbers, no item data).
  sqs_managed_sse_enabled = true
}

resource "aws_lambda_event_source_mapping" "jobs_stream" {
  event_source_arn                   = aws_dynamodb_table.jobs.stream_arn
  function_name                      = aws_lambda_alias.live["launcher"].arn
  starting_position                  = "LATEST"
  batch_size                         = var.launcher_batch_size
  maximum_batching_window_in_seconds = var.launcher_batching_window_seconds
  bisect_batch_on_function_error     = true
  maximum_retry_attempts             = var.launcher_maximum_retry_attempts
  maximum_record_age_in_seconds      = var.launcher_maximum_record_age_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  filter_criteria {
    dynamic "filter" {
      for_each = local.launcher_filter_patterns
      content {
        pattern = jsonencode(filter.value)
      }
    }
  }

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.launcher_dlq.arn
    }
  }
}

# ---- the reaper's schedule -------------------------------------------------------------------

resource "aws_cloudwatch_event_rule" "reaper" {
  name                = "${var.project_name}-reaper"
  description         = "Runs the reaper"
  schedule_expression = var.reaper_schedule_minutes == 1 ? "rate(1 minute)" : "rate(${var.reaper_schedule_minutes} minutes)"
}

resource "aws_cloudwatch_event_target" "reaper" {
  rule = aws_cloudwatch_event_rule.reaper.name
  arn  = aws_lambda_alias.live["reaper"].arn

  retry_policy {
    # A late run is pointless: the next one is minutes away.
    maximum_event_age_in_seconds = 60 * var.reaper_schedule_minutes
    maximum_retry_attempts       = 0
  }
}

resource "aws_lambda_permission" "reaper_schedule" {
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.service["reaper"].function_name
  qualifier     = aws_lambda_alias.live["reaper"].name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.reaper.arn
}
