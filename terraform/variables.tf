# ---- the seed's variables, with the seed's defaults ----------------------------------------

variable "aws_region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must look like us-east-1."
  }
}

variable "project_name" {
  description = "Prefix of every resource name, and the value of the Project tag on everything (worker instances included)."
  type        = string
  default     = "seren-replication"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,38}$", var.project_name))
    error_message = "project_name: 3-39 characters, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Name of this deployment's environment (production, staging, ...): the Environment tag on everything."
  type        = string
  default     = "production"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.:/=+@-]{1,128}$", var.environment))
    error_message = "environment must be a valid tag value without spaces (1-128 characters)."
  }
}

variable "extra_tags" {
  description = "More tags for every resource (cost centre, owner, ...); Project and Environment are set by the module."
  type        = map(string)
  default     = {}

  validation {
    condition     = length(setintersection(keys(var.extra_tags), ["Project", "Environment"])) == 0
    error_message = "extra_tags must not set Project or Environment: the module sets them from project_name and environment."
  }
}

variable "dynamodb_table_name" {
  description = "Name of the jobs table."
  type        = string
  default     = "replication-jobs"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.dynamodb_table_name))
    error_message = "dynamodb_table_name must be a valid DynamoDB table name."
  }
}

variable "table_deletion_protection" {
  description = "Deletion protection on the jobs and API-keys tables: `terraform destroy` fails while it is on. Turn it off (and apply) only to remove a deployment on purpose."
  type        = bool
  default     = true
}

variable "worker_ami_id" {
  description = "AMI of the worker image (see worker/image/README.md). Required."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.worker_ami_id))
    error_message = "worker_ami_id must be an AMI id (ami-...)."
  }
}

variable "worker_instance_type" {
  description = "Instance type of the launch template, used when a job gives no size hint."
  type        = string
  default     = "c5.2xlarge"

  validation {
    condition     = can(regex("^[a-z0-9-]+\\.[a-z0-9]+$", var.worker_instance_type))
    error_message = "worker_instance_type must look like c5.2xlarge."
  }
}

variable "worker_iam_role_name" {
  description = "Name of the workers' IAM role and instance profile."
  type        = string
  default     = "seren-replication-worker"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.worker_iam_role_name))
    error_message = "worker_iam_role_name must be a valid IAM role name."
  }
}

# ---- network ---------------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the workers: give a VPC with private subnets and NAT or VPC endpoints. null (the seed's tfvars set none): the account's default VPC and its default subnets, with a warning at every plan."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id (vpc-...)."
  }
}

variable "subnet_ids" {
  description = "Subnets of the workers in vpc_id, tried in order when one has no capacity. They need a route to the AWS APIs and to the databases. Required with vpc_id; null without it (the default VPC's default subnets)."
  type        = list(string)
  default     = null

  validation {
    condition     = var.subnet_ids == null || try(length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))]), false)
    error_message = "subnet_ids: at least one subnet id (subnet-...)."
  }
}

variable "database_egress_cidrs" {
  description = "Where workers may open PostgreSQL connections (sources and targets). null: every public IPv4 range, none a VPC can number itself from (generated/public_ipv4_cidrs.json)."
  type        = list(string)
  default     = null

  validation {
    condition     = var.database_egress_cidrs == null || alltrue([for c in coalesce(var.database_egress_cidrs, []) : can(cidrhost(c, 0))])
    error_message = "database_egress_cidrs must be CIDR blocks."
  }
}

variable "database_ports" {
  description = "TCP ports of the PostgreSQL servers workers connect to."
  type        = list(number)
  default     = [5432]

  validation {
    condition     = length(var.database_ports) > 0 && alltrue([for p in var.database_ports : p >= 1 && p <= 65535 && floor(p) == p])
    error_message = "database_ports must be TCP ports."
  }
}

# ---- jobs ------------------------------------------------------------------------------------

variable "max_concurrent_jobs" {
  description = "Worker slots: jobs running at once; further jobs wait as queued."
  type        = number
  default     = 10

  validation {
    condition     = floor(var.max_concurrent_jobs) == var.max_concurrent_jobs && (var.max_concurrent_jobs >= 1 && var.max_concurrent_jobs <= 1000)
    error_message = "max_concurrent_jobs must be between 1 and 1000, a whole number."
  }
}

variable "max_running_jobs_per_owner" {
  description = "Worker slots one API key owner may hold at once; its further jobs wait as queued, and queued jobs are offered slots oldest first across owners."
  type        = number
  default     = 2

  validation {
    condition     = floor(var.max_running_jobs_per_owner) == var.max_running_jobs_per_owner && (var.max_running_jobs_per_owner >= 1 && var.max_running_jobs_per_owner <= 1000)
    error_message = "max_running_jobs_per_owner must be between 1 and 1000, a whole number."
  }
}

variable "max_unfinished_jobs_per_owner" {
  description = "Unfinished jobs one API key owner may have; more are refused with 429."
  type        = number
  default     = 20

  validation {
    condition     = floor(var.max_unfinished_jobs_per_owner) == var.max_unfinished_jobs_per_owner && (var.max_unfinished_jobs_per_owner >= 1 && var.max_unfinished_jobs_per_owner <= 10000)
    error_message = "max_unfinished_jobs_per_owner must be between 1 and 10000, a whole number."
  }
}

variable "api_key_rate_per_second" {
  description = "Requests a second each API key may make, on average; past its burst a key gets 429 with Retry-After (other keys are not slowed)."
  type        = number
  default     = 5

  validation {
    condition     = var.api_key_rate_per_second > 0 && var.api_key_rate_per_second <= 10000
    error_message = "api_key_rate_per_second must be above 0 and at most 10000."
  }
}

variable "api_key_burst" {
  description = "Requests an API key may make at once after a quiet spell (its token bucket's size)."
  type        = number
  default     = 20

  validation {
    condition     = floor(var.api_key_burst) == var.api_key_burst && (var.api_key_burst >= 1 && var.api_key_burst <= 100000)
    error_message = "api_key_burst must be between 1 and 100000, a whole number."
  }
}

variable "max_job_runtime_seconds" {
  description = "Longest run time of one job: the API refuses a longer job_timeout_seconds (400) and grants this to a job asking for the longest (0); the reaper times jobs out past it."
  type        = number
  default     = 604800

  validation {
    condition     = floor(var.max_job_runtime_seconds) == var.max_job_runtime_seconds && (var.max_job_runtime_seconds >= 60 && var.max_job_runtime_seconds <= 604800)
    error_message = "max_job_runtime_seconds must be between 60 and 604800 (7 days), a whole number."
  }
}

variable "max_estimated_size_bytes" {
  description = "Largest estimated_size_bytes a client may give (400 beyond): the size chooses the worker's instance type through worker_instance_type_by_size, so this caps the size class clients can ask for."
  type        = number
  default     = 17592186044416

  validation {
    condition     = floor(var.max_estimated_size_bytes) == var.max_estimated_size_bytes && var.max_estimated_size_bytes >= 0
    error_message = "max_estimated_size_bytes must be a whole number of bytes, 0 or more."
  }
}

variable "job_retention_days" {
  description = "Days a job item is kept (the table's TTL) before DynamoDB deletes it."
  type        = number
  default     = 30

  validation {
    condition     = floor(var.job_retention_days) == var.job_retention_days && (var.job_retention_days >= 1 && var.job_retention_days <= 3650)
    error_message = "job_retention_days must be between 1 and 3650, a whole number."
  }
}

variable "allowed_target_suffixes" {
  description = "Host suffixes a target database must end in. An empty list allows any public host."
  type        = list(string)
  default     = ["serendb.com"]

  validation {
    condition     = alltrue([for s in var.allowed_target_suffixes : can(regex("^[A-Za-z0-9.-]+$", s))])
    error_message = "allowed_target_suffixes must be host names or suffixes, without commas."
  }
}

variable "allow_loopback_hosts" {
  description = "Whether sources and targets may be loopback addresses. Only the local cloud, whose databases run on this machine, sets it; on AWS a worker's loopback is the worker itself."
  type        = bool
  default     = false
}

variable "worker_shutdown_if_not_terminated" {
  description = "Whether a worker powers its instance off when it cannot terminate it through the API (the launch template makes shutdown terminate). Only the local cloud, whose instances are processes on this machine, turns it off."
  type        = bool
  default     = true
}

variable "seren_console_url" {
  description = "The SerenDB console API that workers call for jobs whose target is a SerenDB project (creating its databases, enabling logical replication)."
  type        = string
  default     = "https://api.serendb.com"

  validation {
    condition     = can(regex("^https?://[^/?#\\s]+(/[^?#\\s]*)?$", var.seren_console_url))
    error_message = "seren_console_url must be an http(s) URL."
  }
}

variable "allow_private_hosts" {
  description = "Whether sources and targets may be private (RFC 1918) addresses, for databases inside the workers' VPC."
  type        = bool
  default     = false
}

variable "worker_instance_type_by_size" {
  description = "Instance type by the job's estimated_size_bytes, ascending: the first entry whose below_bytes exceeds the estimate wins; an entry without below_bytes matches any size."
  type = list(object({
    below_bytes   = optional(number)
    instance_type = string
  }))
  default = [
    { below_bytes = 10737418240, instance_type = "t3.medium" },
    { below_bytes = 107374182400, instance_type = "c5.large" },
    { below_bytes = 1099511627776, instance_type = "c5.2xlarge" },
    { instance_type = "c5.4xlarge" },
  ]
}

variable "worker_fallback_instance_types" {
  description = "Instance types tried, in order, when the chosen one has no capacity."
  type        = list(string)
  default     = ["c5a.2xlarge", "m5.2xlarge"]
}

variable "worker_root_volume_size_gb" {
  description = "Size of the workers' encrypted gp3 root volume (dumps of large databases need room)."
  type        = number
  default     = 100

  validation {
    condition     = floor(var.worker_root_volume_size_gb) == var.worker_root_volume_size_gb && (var.worker_root_volume_size_gb >= 8 && var.worker_root_volume_size_gb <= 16384)
    error_message = "worker_root_volume_size_gb must be between 8 and 16384, a whole number."
  }
}

variable "worker_root_device_name" {
  description = "Root device name of the worker AMI (/dev/xvda on Amazon Linux 2023, /dev/sda1 on Ubuntu)."
  type        = string
  default     = "/dev/xvda"
}

variable "heartbeat_interval_seconds" {
  description = "How often a worker writes its heartbeat into the job item."
  type        = number
  default     = 30

  validation {
    condition     = floor(var.heartbeat_interval_seconds) == var.heartbeat_interval_seconds && (var.heartbeat_interval_seconds >= 5 && var.heartbeat_interval_seconds <= 600)
    error_message = "heartbeat_interval_seconds must be between 5 and 600, a whole number."
  }
}

variable "heartbeat_timeout_seconds" {
  description = "A running job whose heartbeat is older than this is failed by the reaper and its instance terminated."
  type        = number
  default     = 300

  validation {
    condition     = floor(var.heartbeat_timeout_seconds) == var.heartbeat_timeout_seconds && (var.heartbeat_timeout_seconds >= 60)
    error_message = "heartbeat_timeout_seconds must be at least 60, a whole number."
  }
}

variable "provisioning_grace_seconds" {
  description = "How long a launched instance may take to start its worker before the reaper relaunches or fails the job."
  type        = number
  default     = 900

  validation {
    condition     = floor(var.provisioning_grace_seconds) == var.provisioning_grace_seconds && (var.provisioning_grace_seconds >= 60)
    error_message = "provisioning_grace_seconds must be at least 60, a whole number."
  }
}

variable "reaper_schedule_minutes" {
  description = "Minutes between two reaper runs."
  type        = number
  default     = 5

  validation {
    condition     = floor(var.reaper_schedule_minutes) == var.reaper_schedule_minutes && (var.reaper_schedule_minutes >= 1 && var.reaper_schedule_minutes <= 60)
    error_message = "reaper_schedule_minutes must be between 1 and 60, a whole number."
  }
}

# ---- functions -------------------------------------------------------------------------------

variable "lambda_architecture" {
  description = "Architecture of the three functions; must match what `make package` built (arm64 by default)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be arm64 or x86_64."
  }
}

variable "lambda_runtime" {
  description = "Python runtime of the functions; must match the Python version the packages were built for."
  type        = string
  default     = "python3.12"

  validation {
    condition     = contains(["python3.12", "python3.13"], var.lambda_runtime)
    error_message = "lambda_runtime must be python3.12 or python3.13."
  }
}

variable "lambda_package_dir" {
  description = "Directory holding api.zip, launcher.zip and reaper.zip from `make package`; defaults to the repository's build/."
  type        = string
  default     = null
}

variable "api_reserved_concurrency" {
  description = "Reserved concurrency of the API function (caps what a flood of requests can cost and take from the account); -1 for none."
  type        = number
  default     = 20

  validation {
    condition     = floor(var.api_reserved_concurrency) == var.api_reserved_concurrency && (var.api_reserved_concurrency == -1 || var.api_reserved_concurrency >= 1)
    error_message = "api_reserved_concurrency must be -1 or at least 1, a whole number."
  }
}

variable "launcher_reserved_concurrency" {
  description = "Reserved concurrency of the launcher (one invocation per stream shard is enough); -1 for none."
  type        = number
  default     = 5

  validation {
    condition     = floor(var.launcher_reserved_concurrency) == var.launcher_reserved_concurrency && (var.launcher_reserved_concurrency == -1 || var.launcher_reserved_concurrency >= 1)
    error_message = "launcher_reserved_concurrency must be -1 or at least 1, a whole number."
  }
}

variable "reaper_reserved_concurrency" {
  description = "Reserved concurrency of the reaper (1: one run at a time); -1 for none, on accounts whose concurrency limit leaves nothing to reserve."
  type        = number
  default     = 1

  validation {
    condition     = floor(var.reaper_reserved_concurrency) == var.reaper_reserved_concurrency && (var.reaper_reserved_concurrency == -1 || var.reaper_reserved_concurrency >= 1)
    error_message = "reaper_reserved_concurrency must be -1 or at least 1, a whole number."
  }
}

variable "lambda_snap_start" {
  description = "SnapStart on the functions' published versions (Python 3.12 and later): shorter cold starts, for a charge per snapshot restored."
  type        = bool
  default     = false
}

variable "launcher_batch_size" {
  description = "Stream records per launcher invocation."
  type        = number
  default     = 10

  validation {
    condition     = floor(var.launcher_batch_size) == var.launcher_batch_size && (var.launcher_batch_size >= 1 && var.launcher_batch_size <= 1000)
    error_message = "launcher_batch_size must be between 1 and 1000, a whole number."
  }
}

variable "launcher_batching_window_seconds" {
  description = "How long the stream mapping gathers records before it calls the launcher (0: as soon as any arrive). A longer window makes fewer, larger batches under load and delays every launch by up to that long."
  type        = number
  default     = 1

  validation {
    condition     = floor(var.launcher_batching_window_seconds) == var.launcher_batching_window_seconds && var.launcher_batching_window_seconds >= 0 && var.launcher_batching_window_seconds <= 300
    error_message = "launcher_batching_window_seconds must be between 0 and 300, a whole number."
  }
}

variable "launcher_maximum_retry_attempts" {
  description = "Retries of a failing stream batch (halved by bisection) before its records go to the DLQ."
  type        = number
  default     = 5

  validation {
    condition     = floor(var.launcher_maximum_retry_attempts) == var.launcher_maximum_retry_attempts && (var.launcher_maximum_retry_attempts >= 0 && var.launcher_maximum_retry_attempts <= 10000)
    error_message = "launcher_maximum_retry_attempts must be between 0 and 10000, a whole number."
  }
}

variable "launcher_maximum_record_age_seconds" {
  description = "Stream records older than this go to the DLQ unprocessed (the reaper still picks their jobs up)."
  type        = number
  default     = 3600

  validation {
    condition     = floor(var.launcher_maximum_record_age_seconds) == var.launcher_maximum_record_age_seconds && (var.launcher_maximum_record_age_seconds == -1 || (var.launcher_maximum_record_age_seconds >= 60 && var.launcher_maximum_record_age_seconds <= 604800))
    error_message = "launcher_maximum_record_age_seconds must be -1 or between 60 and 604800, a whole number."
  }
}

variable "log_level" {
  description = "Log level of the functions (POWERTOOLS_LOG_LEVEL)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "log_retention_days" {
  description = "Retention of every log group (functions, API access logs, worker logs)."
  type        = number
  default     = 7

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, ...)."
  }
}

# ---- API -------------------------------------------------------------------------------------

variable "api_throttle_rate_limit" {
  description = "Steady-state requests per second the HTTP API stage accepts."
  type        = number
  default     = 20
}

variable "api_throttle_burst_limit" {
  description = "Burst of requests the HTTP API stage accepts."
  type        = number
  default     = 40

  validation {
    condition     = floor(var.api_throttle_burst_limit) == var.api_throttle_burst_limit && var.api_throttle_burst_limit >= 1
    error_message = "api_throttle_burst_limit must be a whole number, at least 1."
  }
}

# ---- monitoring ------------------------------------------------------------------------------

variable "metrics_namespace" {
  description = "CloudWatch namespace of the service's metrics (POWERTOOLS_METRICS_NAMESPACE)."
  type        = string
  default     = "SerenReplication"

  validation {
    condition     = can(regex("^[A-Za-z0-9/_.#:-]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "metrics_namespace must be a custom CloudWatch namespace."
  }
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarms topic; empty for no subscription."
  type        = string
  default     = ""

  validation {
    condition     = var.alarm_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an e-mail address or empty."
  }
}

variable "iterator_age_alarm_seconds" {
  description = "Alarm when the launcher falls this far behind the jobs stream."
  type        = number
  default     = 300

  validation {
    condition     = floor(var.iterator_age_alarm_seconds) == var.iterator_age_alarm_seconds && var.iterator_age_alarm_seconds >= 1
    error_message = "iterator_age_alarm_seconds must be a whole number, at least 1."
  }
}

variable "launch_lease_seconds" {
  description = "A launcher that claimed a launch attempt and went silent this long is presumed dead and the attempt is retried (keep it well above the launcher's 120 s timeout)."
  type        = number
  default     = 300

  validation {
    condition     = floor(var.launch_lease_seconds) == var.launch_lease_seconds && (var.launch_lease_seconds >= 180)
    error_message = "launch_lease_seconds must be at least 180 (above the launcher's timeout), a whole number."
  }
}

variable "max_capacity_failures" {
  description = "Launches of one job that may find no EC2 capacity in any subnet or instance type (retried on each slot release and reaper pass) before the job fails."
  type        = number
  default     = 12

  validation {
    condition     = var.max_capacity_failures >= 1 && var.max_capacity_failures <= 1000 && floor(var.max_capacity_failures) == var.max_capacity_failures
    error_message = "max_capacity_failures must be a whole number between 1 and 1000."
  }
}

variable "reaper_grace_seconds" {
  description = "The reaper's other thresholds: how long past its deadline a job may run (deadline), how long a cancel may take (cancel), how old a pending job may get before it is relaunched (pending), how long a pending/queued job may hold a slot unlaunched (slot_hold), and how young an untracked instance may be before it counts as an orphan (orphan)."
  type = object({
    deadline  = optional(number, 600)
    cancel    = optional(number, 300)
    pending   = optional(number, 180)
    slot_hold = optional(number, 900)
    orphan    = optional(number, 600)
  })
  default = {}

  validation {
    condition     = alltrue([for v in values(var.reaper_grace_seconds) : floor(v) == v]) && var.reaper_grace_seconds.deadline >= 0 && var.reaper_grace_seconds.cancel >= 30 && var.reaper_grace_seconds.pending >= 30 && var.reaper_grace_seconds.slot_hold >= 60 && var.reaper_grace_seconds.orphan >= 60
    error_message = "reaper_grace_seconds: whole numbers; deadline >= 0, cancel and pending >= 30, slot_hold and orphan >= 60."
  }
}

variable "worker_capacity" {
  description = "How workers are bought: on-demand, spot, or spot-then-on-demand (Spot across the instance types and subnets first, then on-demand). A Spot interruption is a lost attempt, retried up to max_launch_attempts."
  type        = string
  default     = "spot-then-on-demand"

  validation {
    condition     = contains(["on-demand", "spot", "spot-then-on-demand"], var.worker_capacity)
    error_message = "worker_capacity must be on-demand, spot or spot-then-on-demand."
  }
}

variable "worker_engine" {
  description = "The worker's engine: auto runs the seren-replicator binary where the worker image has it (pg otherwise, and whenever allow_private_hosts is on: the binary's own pg_dump/psql resolve host names again); pg always runs the built-in engine, which keeps passwords out of argv and connects only to checked addresses; seren-replicator requires the binary."
  type        = string
  default     = "auto"

  validation {
    condition     = contains(["auto", "pg", "seren-replicator"], var.worker_engine)
    error_message = "worker_engine must be auto, pg or seren-replicator."
  }
}

variable "max_launch_attempts" {
  description = "Attempts of one job, each on a new instance, before it fails: the first, and one more per attempt lost to the infrastructure (worker never started, instance lost or interrupted, heartbeat lost). Engine errors are not retried."
  type        = number
  default     = 3

  validation {
    condition     = floor(var.max_launch_attempts) == var.max_launch_attempts && (var.max_launch_attempts >= 1 && var.max_launch_attempts <= 10)
    error_message = "max_launch_attempts must be between 1 and 10, a whole number."
  }
}
