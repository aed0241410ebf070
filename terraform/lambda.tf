# The three functions. Code comes from `make package` (build/<name>.zip); each zip holds
# the project's code and its locked dependencies built for var.lambda_architecture.

locals {
  functions = {
    api = {
      name        = local.api_function_name
      memory_size = 512
      timeout     = 15
      reserved    = var.api_reserved_concurrency
    }
    launcher = {
      name        = local.launcher_function_name
      memory_size = 512
      timeout     = 120
      reserved    = var.launcher_reserved_concurrency
    }
    reaper = {
      name        = local.reaper_function_name
      memory_size = 512
      timeout     = 300
      # One reaper at a time: overlapping runs would only repeat each other's work.
      reserved = 1
    }
  }
}

resource "aws_cloudwatch_log_group" "functions" {
  for_each = local.functions

  name = "/aws/lambda/${each.value.name}"
  # checkov:skip=CKV_AWS_338:Operational logs are kept var.log_retention_days (7 by default, as the seed specifies); nothing in them needs a year.
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_lambda_function" "coordinator" {
  # checkov:skip=CKV_AWS_117:The function calls only AWS APIs; a VPC would add NAT or endpoints and protect nothing.
  # checkov:skip=CKV_AWS_272:Code signing needs a signing profile outside this module; the zip is built reproducibly and its sha256 is pinned by source_code_hash.
  # checkov:skip=CKV_AWS_116:Invoked synchronously by API Gateway; the client gets the error, there is nothing to dead-letter.
  # checkov:skip=CKV_AWS_173:The environment holds names and ARNs only, no secrets; Lambda encrypts it at rest with its service key.
  function_name                  = local.functions.api.name
  description                    = "Replication jobs HTTP API"
  role                           = aws_iam_role.api.arn
  handler                        = "services.api.handler.lambda_handler"
  runtime                        = var.lambda_runtime
  architectures                  = [var.lambda_architecture]
  memory_size                    = local.functions.api.memory_size
  timeout                        = local.functions.api.timeout
  reserved_concurrent_executions = local.functions.api.reserved
  filename                       = "${local.package_dir}/api.zip"
  source_code_hash               = filebase64sha256("${local.package_dir}/api.zip")

  environment {
    variables = local.api_environment
  }

  tracing_config {
    mode = "Active"
  }

  depends_on = [aws_cloudwatch_log_group.functions, aws_iam_role_policy.api]

  lifecycle {
    precondition {
      condition     = local.package_manifest.architecture == var.lambda_architecture && "python${local.package_manifest.python_version}" == var.lambda_runtime
      error_message = "The zips in the package directory were built for another architecture or Python: run `make package ARCH=<lambda_architecture>`."
    }
  }
}

resource "aws_lambda_function" "launcher" {
  # checkov:skip=CKV_AWS_117:The function calls only AWS APIs; a VPC would add NAT or endpoints and protect nothing.
  # checkov:skip=CKV_AWS_272:Code signing needs a signing profile outside this module; the zip is built reproducibly and its sha256 is pinned by source_code_hash.
  # checkov:skip=CKV_AWS_116:Invoked by the stream event source mapping, whose on-failure destination is the DLQ; a function DLQ applies to asynchronous invocations only.
  # checkov:skip=CKV_AWS_173:The environment holds names and ids only, no secrets; Lambda encrypts it at rest with its service key.
  function_name                  = local.functions.launcher.name
  description                    = "Launches workers for new jobs from the jobs stream"
  role                           = aws_iam_role.launcher.arn
  handler                        = "services.launcher.handler.lambda_handler"
  runtime                        = var.lambda_runtime
  architectures                  = [var.lambda_architecture]
  memory_size                    = local.functions.launcher.memory_size
  timeout                        = local.functions.launcher.timeout
  reserved_concurrent_executions = local.functions.launcher.reserved
  filename                       = "${local.package_dir}/launcher.zip"
  source_code_hash               = filebase64sha256("${local.package_dir}/launcher.zip")

  environment {
    variables = local.launcher_environment
  }

  tracing_config {
    mode = "Active"
  }

  depends_on = [aws_cloudwatch_log_group.functions, aws_iam_role_policy.launcher]

  lifecycle {
    precondition {
      condition     = local.package_manifest.architecture == var.lambda_architecture && "python${local.package_manifest.python_version}" == var.lambda_runtime
      error_message = "The zips in the package directory were built for another architecture or Python: run `make package ARCH=<lambda_architecture>`."
    }
  }
}

resource "aws_lambda_function" "reaper" {
  # checkov:skip=CKV_AWS_117:The function calls only AWS APIs; a VPC would add NAT or endpoints and protect nothing.
  # checkov:skip=CKV_AWS_272:Code signing needs a signing profile outside this module; the zip is built reproducibly and its sha256 is pinned by source_code_hash.
  # checkov:skip=CKV_AWS_116:Run by a schedule; a failed run is redone in full by the next one minutes later, so a dead-letter queue would hold nothing useful.
  # checkov:skip=CKV_AWS_173:The environment holds names and ids only, no secrets; Lambda encrypts it at rest with its service key.
  function_name                  = local.functions.reaper.name
  description                    = "Safety net: stale heartbeats, deadlines, stuck launches, orphan instances, queued jobs"
  role                           = aws_iam_role.reaper.arn
  handler                        = "services.reaper.handler.lambda_handler"
  runtime                        = var.lambda_runtime
  architectures                  = [var.lambda_architecture]
  memory_size                    = local.functions.reaper.memory_size
  timeout                        = local.functions.reaper.timeout
  reserved_concurrent_executions = local.functions.reaper.reserved
  filename                       = "${local.package_dir}/reaper.zip"
  source_code_hash               = filebase64sha256("${local.package_dir}/reaper.zip")

  environment {
    variables = local.reaper_environment
  }

  tracing_config {
    mode = "Active"
  }

  depends_on = [aws_cloudwatch_log_group.functions, aws_iam_role_policy.reaper]

  lifecycle {
    precondition {
      condition     = local.package_manifest.architecture == var.lambda_architecture && "python${local.package_manifest.python_version}" == var.lambda_runtime
      error_message = "The zips in the package directory were built for another architecture or Python: run `make package ARCH=<lambda_architecture>`."
    }
  }
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
  function_name                      = aws_lambda_function.launcher.arn
  starting_position                  = "LATEST"
  batch_size                         = var.launcher_batch_size
  maximum_batching_window_in_seconds = 1
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
  arn  = aws_lambda_function.reaper.arn

  retry_policy {
    # A late run is pointless: the next one is minutes away.
    maximum_event_age_in_seconds = 60 * var.reaper_schedule_minutes
    maximum_retry_attempts       = 0
  }
}

resource "aws_lambda_permission" "reaper_schedule" {
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.reaper.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.reaper.arn
}
