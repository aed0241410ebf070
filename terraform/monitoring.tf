# Dashboard and alarms. The service's own metrics are Powertools EMF metrics in
# var.metrics_namespace with the dimension service = api | launcher | reaper (| worker);
# their names are the ones the code emits (tests/infra checks each name used here).

locals {
  # Names the code emits (tests/infra checks each one against the code):
  # launcher/reaper/api: Powertools EMF, dimension service = the function's service name;
  # worker: PutMetricData at the end of a job, no service dimension.
  service_metrics = {
    job_outcome      = "JobOutcome"             # worker, dimension Outcome
    job_duration     = "JobDuration"            # worker, dimensions Command, Engine
    active_jobs      = "ActiveJobs"             # reaper, each run
    queued_jobs      = "QueuedJobs"             # reaper, each run
    queued_by_owner  = "JobsQueuedAtOwnerLimit" # launcher: queued because the owner is at its running limit
    running_workers  = "RunningInstances"
    launch_latency   = "LaunchLatency"  # launcher: job created -> instance requested
    launch_failures  = "LaunchFailures" # launcher, dimension ErrorCode
    stale_jobs       = "StaleJobsReaped"
    timed_out        = "JobsTimedOut"
    start_failures   = "WorkerStartFailures"
    orphan_instances = "OrphansTerminated"
  }
  # Counted by a metric filter from a fixed log line, not emitted by the code (tests/infra
  # checks the line is the one jobs/store.py logs). No dimension: a filter's dimensions can
  # only come from fields of the line, and any function's count is worth a look.
  log_metrics = {
    unreadable_items = "UnreadableJobItems"
  }
  unreadable_item_line = "unreadable job item skipped"
  reaper_action_metrics = [
    "StaleJobsReaped",
    "JobsTimedOut",
    "CancelsCompleted",
    "Relaunches",
    "WorkerStartFailures",
    "OrphansTerminated",
    "ExpiredDeleted",
    "SlotsReconciled",
    "ReaperErrors",
  ]

  ns        = var.metrics_namespace
  period    = 300
  fn_names  = { for k, f in local.functions : k => f.name }
  dlq_name  = aws_sqs_queue.launcher_dlq.name
  dashboard = "${var.project_name}-service"

  dashboard_widgets = [
    {
      type = "metric", x = 0, y = 0, width = 12, height = 6
      properties = {
        title   = "Jobs by outcome"
        region  = var.aws_region
        view    = "timeSeries"
        stacked = true
        metrics = [[{ expression = "SEARCH('{${local.ns},Outcome} MetricName=\"${local.service_metrics.job_outcome}\"', 'Sum', ${local.period})", id = "outcomes", label = "" }]]
      }
    },
    {
      type = "metric", x = 12, y = 0, width = 12, height = 6
      properties = {
        title  = "Active and queued jobs"
        region = var.aws_region
        view   = "timeSeries"
        stat   = "Maximum"
        period = local.period
        metrics = [
          [local.ns, local.service_metrics.active_jobs, "service", "reaper"],
          [local.ns, local.service_metrics.queued_jobs, "service", "reaper"],
          [local.ns, local.service_metrics.queued_by_owner, "service", "launcher", { stat = "Sum" }],
        ]
      }
    },
    {
      type = "metric", x = 0, y = 6, width = 8, height = 6
      properties = {
        title  = "Launch latency (job created to instance requested, seconds)"
        region = var.aws_region
        view   = "timeSeries"
        period = local.period
        metrics = [
          [local.ns, local.service_metrics.launch_latency, "service", "launcher", { stat = "p50" }],
          [local.ns, local.service_metrics.launch_latency, "service", "launcher", { stat = "p90" }],
          [local.ns, local.service_metrics.launch_latency, "service", "launcher", { stat = "Maximum" }],
        ]
      }
    },
    {
      type = "metric", x = 8, y = 6, width = 8, height = 6
      properties = {
        title   = "Job duration (p90, seconds)"
        region  = var.aws_region
        view    = "timeSeries"
        metrics = [[{ expression = "SEARCH('{${local.ns},Command,Engine} MetricName=\"${local.service_metrics.job_duration}\"', 'p90', ${local.period})", id = "duration", label = "" }]]
      }
    },
    {
      type = "metric", x = 16, y = 6, width = 8, height = 6
      properties = {
        title   = "Failures by reason"
        region  = var.aws_region
        view    = "timeSeries"
        stacked = true
        stat    = "Sum"
        period  = local.period
        metrics = [
          [local.ns, local.service_metrics.job_outcome, "Outcome", "failed", { label = "worker: failed" }],
          [local.ns, local.service_metrics.job_outcome, "Outcome", "timeout", { label = "worker: timeout" }],
          [local.ns, local.service_metrics.stale_jobs, "service", "reaper", { label = "reaper: lost worker" }],
          [local.ns, local.service_metrics.timed_out, "service", "reaper", { label = "reaper: deadline" }],
          [local.ns, local.service_metrics.start_failures, "service", "reaper", { label = "reaper: worker never started" }],
          [{ expression = "SEARCH('{${local.ns},ErrorCode,service} MetricName=\"${local.service_metrics.launch_failures}\"', 'Sum', ${local.period})", id = "launch", label = "launch: " }],
        ]
      }
    },
    {
      type = "metric", x = 0, y = 12, width = 8, height = 6
      properties = {
        title   = "Lambda errors and throttles"
        region  = var.aws_region
        view    = "timeSeries"
        stat    = "Sum"
        period  = local.period
        metrics = concat([for k, n in local.fn_names : ["AWS/Lambda", "Errors", "FunctionName", n]], [for k, n in local.fn_names : ["AWS/Lambda", "Throttles", "FunctionName", n]])
      }
    },
    {
      type = "metric", x = 8, y = 12, width = 8, height = 6
      properties = {
        title   = "Lambda duration (p90)"
        region  = var.aws_region
        view    = "timeSeries"
        stat    = "p90"
        period  = local.period
        metrics = [for k, n in local.fn_names : ["AWS/Lambda", "Duration", "FunctionName", n]]
      }
    },
    {
      type = "metric", x = 16, y = 12, width = 8, height = 6
      properties = {
        title   = "Jobs stream iterator age (launcher)"
        region  = var.aws_region
        view    = "timeSeries"
        stat    = "Maximum"
        period  = 60
        metrics = [["AWS/Lambda", "IteratorAge", "FunctionName", local.fn_names.launcher]]
      }
    },
    {
      type = "metric", x = 0, y = 18, width = 8, height = 6
      properties = {
        title   = "Launcher DLQ depth"
        region  = var.aws_region
        view    = "timeSeries"
        stat    = "Maximum"
        period  = 60
        metrics = [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.dlq_name]]
      }
    },
    {
      type = "metric", x = 8, y = 18, width = 8, height = 6
      properties = {
        title   = "Running worker instances"
        region  = var.aws_region
        view    = "timeSeries"
        stat    = "Maximum"
        period  = local.period
        metrics = [[local.ns, local.service_metrics.running_workers, "service", "reaper"]]
      }
    },
    {
      type = "metric", x = 16, y = 18, width = 8, height = 6
      properties = {
        title   = "Reaper actions"
        region  = var.aws_region
        view    = "timeSeries"
        stacked = true
        stat    = "Sum"
        period  = local.period
        metrics = [for m in local.reaper_action_metrics : [local.ns, m, "service", "reaper"]]
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "service" {
  dashboard_name = local.dashboard
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}

# ---- alarms ----------------------------------------------------------------------------------

# The API, the launcher and the reaper skip a job item they cannot parse (forged or damaged)
# and log one fixed line for it; each such line counts once here.
resource "aws_cloudwatch_log_metric_filter" "unreadable_items" {
  for_each = local.functions

  name           = "${each.value.name}-unreadable-job-items"
  log_group_name = aws_cloudwatch_log_group.functions[each.key].name
  pattern        = "\"${local.unreadable_item_line}\""

  metric_transformation {
    namespace = local.ns
    name      = local.log_metrics.unreadable_items
    value     = "1"
    unit      = "Count"
  }
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.project_name}-alarms"
  kms_master_key_id = aws_kms_key.data.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# Every alarm has the same shape; each entry says what differs. Alarms whose recovery is worth
# knowing about also notify when they return to OK.
locals {
  function_alarms = merge(
    { for k, name in local.fn_names : "${k}_errors" => {
      name        = "${name}-errors"
      description = "The ${k} function failed invocations."
      namespace   = "AWS/Lambda", metric = "Errors", dimensions = { FunctionName = name }
      statistic   = "Sum", period = 300, periods = 1, threshold = 0, comparison = "GreaterThanThreshold"
      missing     = "notBreaching", notify_ok = true
    } },
    { for k, name in local.fn_names : "${k}_throttles" => {
      name        = "${name}-throttles"
      description = "The ${k} function was throttled: its reserved concurrency or the account's limit is too low."
      namespace   = "AWS/Lambda", metric = "Throttles", dimensions = { FunctionName = name }
      statistic   = "Sum", period = 300, periods = 1, threshold = 0, comparison = "GreaterThanThreshold"
      missing     = "notBreaching", notify_ok = true
    } },
  )

  service_alarms = {
    reaper_not_running = {
      name        = "${var.project_name}-reaper-not-running"
      description = "The reaper was not invoked for three schedule periods: stale jobs, orphans and queued jobs are not handled."
      namespace   = "AWS/Lambda", metric = "Invocations", dimensions = { FunctionName = local.fn_names.reaper }
      statistic   = "Sum", period = 60 * var.reaper_schedule_minutes, periods = 3, threshold = 1, comparison = "LessThanThreshold"
      # No data is what a reaper that stopped running produces.
      missing = "breaching", notify_ok = true
    }
    dlq_not_empty = {
      name        = "${var.project_name}-launcher-dlq-not-empty"
      description = "Stream records the launcher could not handle; their jobs are picked up by the reaper, but the cause needs a look."
      namespace   = "AWS/SQS", metric = "ApproximateNumberOfMessagesVisible", dimensions = { QueueName = local.dlq_name }
      statistic   = "Maximum", period = 300, periods = 1, threshold = 0, comparison = "GreaterThanThreshold"
      missing     = "notBreaching", notify_ok = true
    }
    dlq_oldest_message = {
      name        = "${var.project_name}-launcher-dlq-oldest-message"
      description = "A dead-lettered stream batch has waited a day unexamined; the queue keeps it 14 days."
      namespace   = "AWS/SQS", metric = "ApproximateAgeOfOldestMessage", dimensions = { QueueName = local.dlq_name }
      statistic   = "Maximum", period = 300, periods = 1, threshold = 86400, comparison = "GreaterThanThreshold"
      missing     = "notBreaching", notify_ok = true
    }
    iterator_age = {
      name        = "${var.project_name}-launcher-iterator-age"
      description = "The launcher is falling behind the jobs stream: new jobs wait."
      namespace   = "AWS/Lambda", metric = "IteratorAge", dimensions = { FunctionName = local.fn_names.launcher }
      statistic   = "Maximum", period = 60, periods = 5, threshold = var.iterator_age_alarm_seconds * 1000, comparison = "GreaterThanThreshold"
      missing     = "notBreaching", notify_ok = true
    }
    stale_jobs_reaped = {
      name        = "${var.project_name}-stale-jobs-reaped"
      description = "The reaper ended jobs whose workers stopped heartbeating."
      namespace   = local.ns, metric = local.service_metrics.stale_jobs, dimensions = { service = "reaper" }
      statistic   = "Sum", period = 900, periods = 1, threshold = 0, comparison = "GreaterThanThreshold"
      missing     = "notBreaching", notify_ok = false
    }
    orphans_found = {
      name        = "${var.project_name}-orphan-instances"
      description = "The reaper terminated worker instances that had no live job (orphans)."
      namespace   = local.ns, metric = local.service_metrics.orphan_instances, dimensions = { service = "reaper" }
      statistic   = "Sum", period = 900, periods = 1, threshold = 0, comparison = "GreaterThanThreshold"
      missing     = "notBreaching", notify_ok = false
    }
    unreadable_items = {
      name        = "${var.project_name}-unreadable-job-items"
      description = "A function skipped a job item it could not parse (forged by a worker, or damaged): its log line names the job and the failing fields."
      namespace   = local.ns, metric = local.log_metrics.unreadable_items, dimensions = {}
      statistic   = "Sum", period = 300, periods = 1, threshold = 0, comparison = "GreaterThanThreshold"
      missing     = "notBreaching", notify_ok = true
    }
    api_5xx = {
      name        = "${var.project_name}-api-5xx"
      description = "The HTTP API answered with server errors."
      namespace   = "AWS/ApiGateway", metric = "5xx", dimensions = { ApiId = aws_apigatewayv2_api.http.id, Stage = "$default" }
      statistic   = "Sum", period = 300, periods = 1, threshold = 0, comparison = "GreaterThanThreshold"
      missing     = "notBreaching", notify_ok = true
    }
  }

  alarms = merge(local.function_alarms, local.service_alarms)
}

resource "aws_cloudwatch_metric_alarm" "service" {
  for_each = local.alarms

  alarm_name          = each.value.name
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  period              = each.value.period
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = each.value.comparison
  treat_missing_data  = each.value.missing
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = each.value.notify_ok ? [aws_sns_topic.alarms.arn] : []
}
