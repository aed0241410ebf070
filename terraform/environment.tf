# Each function's environment: exactly the variables its settings model reads
# (services/<name>/settings.py), plus POWERTOOLS_*, which Powertools reads itself.
# Written out in full per function, so that tests/infra can compare them with the code.

locals {
  api_environment = {
    JOBS_TABLE_NAME               = aws_dynamodb_table.jobs.name
    API_KEYS_TABLE_NAME           = aws_dynamodb_table.api_keys.name
    KMS_KEY_ID                    = aws_kms_key.credentials.arn
    REQUEST_MAC_KEY_ID            = aws_kms_key.request_mac.arn
    JOB_RETENTION_DAYS            = tostring(var.job_retention_days)
    MAX_UNFINISHED_JOBS_PER_OWNER = tostring(var.max_unfinished_jobs_per_owner)
    MAX_JOB_RUNTIME_SECONDS       = tostring(var.max_job_runtime_seconds)
    MAX_ESTIMATED_SIZE_BYTES      = tostring(var.max_estimated_size_bytes)
    API_KEY_RATE_PER_SECOND       = tostring(var.api_key_rate_per_second)
    API_KEY_BURST                 = tostring(var.api_key_burst)
    ALLOWED_TARGET_SUFFIXES       = join(",", var.allowed_target_suffixes)
    ALLOW_LOOPBACK_HOSTS          = tostring(var.allow_loopback_hosts)
    ALLOW_PRIVATE_HOSTS           = tostring(var.allow_private_hosts)
    WORKER_LOG_GROUP              = aws_cloudwatch_log_group.workers.name
    POWERTOOLS_SERVICE_NAME       = "api"
    POWERTOOLS_METRICS_NAMESPACE  = var.metrics_namespace
    POWERTOOLS_LOG_LEVEL          = var.log_level
  }

  launcher_environment = {
    JOBS_TABLE_NAME                   = aws_dynamodb_table.jobs.name
    MAX_CONCURRENT_JOBS               = tostring(var.max_concurrent_jobs)
    MAX_RUNNING_JOBS_PER_OWNER        = tostring(var.max_running_jobs_per_owner)
    LAUNCH_TEMPLATE_ID                = aws_launch_template.worker.id
    LAUNCH_TEMPLATE_VERSION           = tostring(aws_launch_template.worker.latest_version)
    SUBNET_IDS                        = join(",", local.subnet_ids)
    DEFAULT_INSTANCE_TYPE             = var.worker_instance_type
    INSTANCE_TYPE_BY_SIZE             = jsonencode([for e in var.worker_instance_type_by_size : [e.below_bytes, e.instance_type]])
    FALLBACK_INSTANCE_TYPES           = join(",", var.worker_fallback_instance_types)
    PROJECT_TAG                       = var.project_name
    LAUNCH_LEASE_SECONDS              = tostring(var.launch_lease_seconds)
    MAX_CAPACITY_FAILURES             = tostring(var.max_capacity_failures)
    MAX_LAUNCH_ATTEMPTS               = tostring(var.max_launch_attempts)
    WORKER_CAPACITY                   = var.worker_capacity
    WORKER_ENGINE                     = var.worker_engine
    WORKER_LOG_GROUP                  = aws_cloudwatch_log_group.workers.name
    JOB_LOG_RETENTION_DAYS            = tostring(var.log_retention_days)
    JOB_LOG_KMS_KEY_ID                = aws_kms_key.data.arn
    WORKER_ROLE_ID                    = aws_iam_role.worker.unique_id
    HEARTBEAT_INTERVAL_SECONDS        = tostring(var.heartbeat_interval_seconds)
    MAX_JOB_RUNTIME_SECONDS           = tostring(var.max_job_runtime_seconds)
    KMS_KEY_ID                        = aws_kms_key.credentials.arn
    ALLOWED_TARGET_SUFFIXES           = join(",", var.allowed_target_suffixes)
    ALLOW_LOOPBACK_HOSTS              = tostring(var.allow_loopback_hosts)
    ALLOW_PRIVATE_HOSTS               = tostring(var.allow_private_hosts)
    WORKER_SHUTDOWN_IF_NOT_TERMINATED = tostring(var.worker_shutdown_if_not_terminated)
    SEREN_CONSOLE_URL                 = var.seren_console_url
    POWERTOOLS_SERVICE_NAME           = "launcher"
    POWERTOOLS_METRICS_NAMESPACE      = var.metrics_namespace
    POWERTOOLS_LOG_LEVEL              = var.log_level
  }

  reaper_environment = {
    JOBS_TABLE_NAME                   = aws_dynamodb_table.jobs.name
    MAX_CONCURRENT_JOBS               = tostring(var.max_concurrent_jobs)
    MAX_RUNNING_JOBS_PER_OWNER        = tostring(var.max_running_jobs_per_owner)
    LAUNCH_TEMPLATE_ID                = aws_launch_template.worker.id
    LAUNCH_TEMPLATE_VERSION           = tostring(aws_launch_template.worker.latest_version)
    SUBNET_IDS                        = join(",", local.subnet_ids)
    DEFAULT_INSTANCE_TYPE             = var.worker_instance_type
    INSTANCE_TYPE_BY_SIZE             = jsonencode([for e in var.worker_instance_type_by_size : [e.below_bytes, e.instance_type]])
    FALLBACK_INSTANCE_TYPES           = join(",", var.worker_fallback_instance_types)
    PROJECT_TAG                       = var.project_name
    LAUNCH_LEASE_SECONDS              = tostring(var.launch_lease_seconds)
    MAX_CAPACITY_FAILURES             = tostring(var.max_capacity_failures)
    WORKER_LOG_GROUP                  = aws_cloudwatch_log_group.workers.name
    JOB_LOG_RETENTION_DAYS            = tostring(var.log_retention_days)
    JOB_LOG_KMS_KEY_ID                = aws_kms_key.data.arn
    WORKER_ROLE_ID                    = aws_iam_role.worker.unique_id
    HEARTBEAT_INTERVAL_SECONDS        = tostring(var.heartbeat_interval_seconds)
    MAX_JOB_RUNTIME_SECONDS           = tostring(var.max_job_runtime_seconds)
    KMS_KEY_ID                        = aws_kms_key.credentials.arn
    ALLOWED_TARGET_SUFFIXES           = join(",", var.allowed_target_suffixes)
    ALLOW_LOOPBACK_HOSTS              = tostring(var.allow_loopback_hosts)
    ALLOW_PRIVATE_HOSTS               = tostring(var.allow_private_hosts)
    HEARTBEAT_TIMEOUT_SECONDS         = tostring(var.heartbeat_timeout_seconds)
    PROVISIONING_GRACE_SECONDS        = tostring(var.provisioning_grace_seconds)
    DEADLINE_GRACE_SECONDS            = tostring(var.reaper_grace_seconds.deadline)
    CANCEL_GRACE_SECONDS              = tostring(var.reaper_grace_seconds.cancel)
    PENDING_GRACE_SECONDS             = tostring(var.reaper_grace_seconds.pending)
    SLOT_HOLD_GRACE_SECONDS           = tostring(var.reaper_grace_seconds.slot_hold)
    ORPHAN_GRACE_SECONDS              = tostring(var.reaper_grace_seconds.orphan)
    MAX_LAUNCH_ATTEMPTS               = tostring(var.max_launch_attempts)
    WORKER_CAPACITY                   = var.worker_capacity
    WORKER_ENGINE                     = var.worker_engine
    WORKER_SHUTDOWN_IF_NOT_TERMINATED = tostring(var.worker_shutdown_if_not_terminated)
    SEREN_CONSOLE_URL                 = var.seren_console_url
    POWERTOOLS_SERVICE_NAME           = "reaper"
    POWERTOOLS_METRICS_NAMESPACE      = var.metrics_namespace
    POWERTOOLS_LOG_LEVEL              = var.log_level
  }
}
