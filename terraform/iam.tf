# One role per function and one for the workers. Statements whose sid starts with
# "Platform" are what the Lambda/EC2 platform does with the role (its own logs, X-Ray,
# reading the stream, the on-failure destination, the CloudWatch agent); every other
# statement is an API the code calls (tests/infra derives those from the code).

locals {
  jobs_table_arns = [aws_dynamodb_table.jobs.arn, "${aws_dynamodb_table.jobs.arn}/index/*"]
  # jobs.reports.REPORT_ATTRIBUTE and the TTL attribute, next to the key.
  worker_report_attributes = ["job_id", "report", "expires_at"]
  ec2_arn_prefix           = "arn:${local.partition}:ec2:${var.aws_region}:${local.account_id}"
  our_instances            = "${local.ec2_arn_prefix}:instance/*"
  # Every job's own log group, "<workers' group>/<job id>" (jobs/job_logs.py), and not the
  # workers' group itself (the instances' boot logs).
  job_log_groups_arn     = "${aws_cloudwatch_log_group.workers.arn}/*"
  job_log_writer_tag_key = "WorkerUserId"
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# ---- what every function's platform needs ---------------------------------------------------

data "aws_iam_policy_document" "function_platform" {
  for_each = local.functions

  statement {
    sid       = "PlatformWritesFunctionLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.functions[each.key].arn}:*"]
  }

  statement {
    sid       = "PlatformSendsTraces"
    effect    = "Allow"
    actions   = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    resources = ["*"] # X-Ray has no resource-level permissions for these actions
  }
}

# ---- api ------------------------------------------------------------------------------------

resource "aws_iam_role" "api" {
  name               = "${var.project_name}-api"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "api" {
  source_policy_documents = [data.aws_iam_policy_document.function_platform["api"].json]

  statement {
    sid       = "JobsReadWrite"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"]
    resources = local.jobs_table_arns
  }

  statement {
    sid       = "ApiKeysRead"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem"]
    resources = [aws_dynamodb_table.api_keys.arn]
  }

  # Each request spends its key's rate-limit bucket: that one attribute only, never the
  # owner or the revoked flag.
  statement {
    sid       = "ApiKeysSpendRequestBucket"
    effect    = "Allow"
    actions   = ["dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.api_keys.arn]

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:Attributes"
      values   = ["key_hash", "rate_arrival_us"]
    }
  }

  statement {
    sid       = "EncryptJobCredentials"
    effect    = "Allow"
    actions   = ["kms:Encrypt"]
    resources = [aws_kms_key.credentials.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:purpose"
      values   = ["replication-job-credentials"]
    }
  }

  statement {
    sid       = "FingerprintRequests"
    effect    = "Allow"
    actions   = ["kms:GenerateMac"]
    resources = [aws_kms_key.request_mac.arn]
  }

  statement {
    sid       = "ReadJobLogs"
    effect    = "Allow"
    actions   = ["logs:GetLogEvents"]
    resources = ["${local.job_log_groups_arn}:log-stream:*"]
  }
}

resource "aws_iam_role_policy" "api" {
  name   = "api"
  role   = aws_iam_role.api.id
  policy = data.aws_iam_policy_document.api.json
}

# ---- launching workers (launcher and reaper) -------------------------------------------------

data "aws_iam_policy_document" "launch_workers" {
  statement {
    sid       = "RunInstancesTaggedFromOurTemplate"
    effect    = "Allow"
    actions   = ["ec2:RunInstances"]
    resources = [local.our_instances]

    condition {
      test     = "ArnEquals"
      variable = "ec2:LaunchTemplate"
      values   = [aws_launch_template.worker.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.owner_tag_key}"
      values   = [var.dynamodb_table_name]
    }
  }

  statement {
    sid     = "RunInstancesWithTheTemplatesVolumesAndInterfaces"
    effect  = "Allow"
    actions = ["ec2:RunInstances"]
    resources = [
      "${local.ec2_arn_prefix}:network-interface/*",
      "${local.ec2_arn_prefix}:volume/*",
    ]

    condition {
      test     = "ArnEquals"
      variable = "ec2:LaunchTemplate"
      values   = [aws_launch_template.worker.arn]
    }
  }

  statement {
    sid     = "RunInstancesInOurNetwork"
    effect  = "Allow"
    actions = ["ec2:RunInstances"]
    resources = concat(
      [for s in local.subnet_ids : "${local.ec2_arn_prefix}:subnet/${s}"],
      [
        aws_security_group.worker.arn,
        aws_launch_template.worker.arn,
      ],
    )
  }

  # Spot workers: RunInstances with market options creates a one-time Spot request with the
  # instance. (The account's Spot service-linked role must exist: see the README.)
  dynamic "statement" {
    for_each = var.worker_capacity == "on-demand" ? [] : ["spot"]
    content {
      sid       = "RunSpotInstancesFromOurTemplate"
      effect    = "Allow"
      actions   = ["ec2:RunInstances"]
      resources = ["${local.ec2_arn_prefix}:spot-instances-request/*"]

      condition {
        test     = "ArnEquals"
        variable = "ec2:LaunchTemplate"
        values   = [aws_launch_template.worker.arn]
      }
    }
  }

  # The image is whatever the template's version names, not one AMI id: while a new image
  # rolls out, jobs launched from an older template version still start.
  statement {
    sid       = "RunInstancesFromTheTemplatesImage"
    effect    = "Allow"
    actions   = ["ec2:RunInstances"]
    resources = ["arn:${local.partition}:ec2:${var.aws_region}::image/*"]

    condition {
      test     = "ArnEquals"
      variable = "ec2:LaunchTemplate"
      values   = [aws_launch_template.worker.arn]
    }

    condition {
      test     = "Bool"
      variable = "ec2:IsLaunchTemplateResource"
      values   = ["true"]
    }
  }

  statement {
    sid       = "TagInstancesAtLaunch"
    effect    = "Allow"
    actions   = ["ec2:CreateTags"]
    resources = [local.our_instances, "${local.ec2_arn_prefix}:volume/*", "${local.ec2_arn_prefix}:network-interface/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }

  statement {
    sid       = "TerminateOnlyOurInstances"
    effect    = "Allow"
    actions   = ["ec2:TerminateInstances"]
    resources = [local.our_instances]

    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/${local.owner_tag_key}"
      values   = [var.dynamodb_table_name]
    }
  }

  statement {
    sid       = "BindJobCredentialsToTheLaunchedInstance"
    effect    = "Allow"
    actions   = ["kms:ReEncryptFrom", "kms:ReEncryptTo"]
    resources = [aws_kms_key.credentials.arn]
  }

  # Each job's log group, created for the instance launched for it and tagged with that
  # instance's caller id (jobs/job_logs.py): the worker policy lets only that caller write it.
  statement {
    sid       = "PrepareJobLogGroups"
    effect    = "Allow"
    actions   = ["logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:TagResource"]
    resources = [local.job_log_groups_arn]
  }

  statement {
    sid       = "DescribeInstances"
    effect    = "Allow"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"] # Describe* has no resource-level permissions
  }

  statement {
    sid       = "PassOnlyTheWorkerRole"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.worker.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }
}

# ---- launcher --------------------------------------------------------------------------------

resource "aws_iam_role" "launcher" {
  name               = "${var.project_name}-launcher"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "launcher" {
  source_policy_documents = [
    data.aws_iam_policy_document.function_platform["launcher"].json,
    data.aws_iam_policy_document.launch_workers.json,
  ]

  statement {
    sid       = "JobsAndSlotLedgerReadWrite"
    effect    = "Allow"
    actions   = ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"]
    resources = local.jobs_table_arns
  }

  statement {
    sid       = "PlatformReadsJobsStream"
    effect    = "Allow"
    actions   = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"]
    resources = [aws_dynamodb_table.jobs.stream_arn]
  }

  statement {
    sid       = "PlatformSendsFailedBatchesToDlq"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.launcher_dlq.arn]
  }
}

resource "aws_iam_role_policy" "launcher" {
  name   = "launcher"
  role   = aws_iam_role.launcher.id
  policy = data.aws_iam_policy_document.launcher.json
}

# ---- reaper ----------------------------------------------------------------------------------

resource "aws_iam_role" "reaper" {
  name               = "${var.project_name}-reaper"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "reaper" {
  source_policy_documents = [
    data.aws_iam_policy_document.function_platform["reaper"].json,
    data.aws_iam_policy_document.launch_workers.json,
  ]

  statement {
    sid       = "JobsAndSlotLedgerReadWriteExpire"
    effect    = "Allow"
    actions   = ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"]
    resources = local.jobs_table_arns
  }

  statement {
    sid       = "DeleteExpiredJobsLogGroups"
    effect    = "Allow"
    actions   = ["logs:DeleteLogGroup"]
    resources = [local.job_log_groups_arn]
  }
}

resource "aws_iam_role_policy" "reaper" {
  name   = "reaper"
  role   = aws_iam_role.reaper.id
  policy = data.aws_iam_policy_document.reaper.json
}

# ---- workers ---------------------------------------------------------------------------------

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "worker" {
  name               = var.worker_iam_role_name
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_instance_profile" "worker" {
  name = var.worker_iam_role_name
  role = aws_iam_role.worker.name
}

data "aws_iam_policy_document" "worker" {
  statement {
    sid       = "ReadJobItemsOnly"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem"]
    resources = [aws_dynamodb_table.jobs.arn]

    # Job items only: not the worker-slot ledger (control#...), which belongs to the
    # launcher and the reaper, nor workers' report items (keyed by a role id, AROA...).
    condition {
      test     = "ForAllValues:StringNotLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["control#*", "AROA*"]
    }
  }

  # A worker writes one item: its report item, keyed by its own caller id
  # (role id:instance id, jobs.worker_identity), which no other worker's requests carry. The
  # launcher copies each report into the job item only while the job is assigned to that
  # instance (control_plane.reports): no worker can write a job item, its own included.
  statement {
    sid       = "WriteOnlyItsOwnReport"
    effect    = "Allow"
    actions   = ["dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.jobs.arn]

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:LeadingKeys"
      values   = ["$${aws:userid}"]
    }

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:Attributes"
      values   = local.worker_report_attributes
    }
  }

  statement {
    sid       = "DecryptJobCredentials"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.credentials.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:purpose"
      values   = ["replication-job-credentials"]
    }

    condition {
      test     = "Null"
      variable = "kms:EncryptionContext:job_id"
      values   = ["false"]
    }

    # Only what the launcher bound to this very instance (the key policy says so too).
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:instance_arn"
      values   = ["$${ec2:SourceInstanceARN}"]
    }
  }

  # Only into the log group of the job this very instance was launched for: the launcher
  # tags it WorkerUserId = <this role's id>:<instance id>, which is the caller id
  # (aws:userid) of an instance role's requests. aws:ResourceTag/${TagKey} is a condition
  # key of the log-stream resource these two actions act on (Service Authorization
  # Reference); a relaunch moves the tag, and the lost instance can no longer write.
  statement {
    sid       = "WriteOwnJobLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.job_log_groups_arn}:log-stream:*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.job_log_writer_tag_key}"
      values   = ["$${aws:userid}"]
    }
  }

  statement {
    sid       = "TerminateOnlyItself"
    effect    = "Allow"
    actions   = ["ec2:TerminateInstances"]
    resources = [local.our_instances]

    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/${local.owner_tag_key}"
      values   = [var.dynamodb_table_name]
    }

    # The instance asked about (ec2:InstanceID, a resource key of TerminateInstances in the
    # Service Authorization Reference) must be the caller's own instance. As a Resource,
    # "${ec2:SourceInstanceARN}" alone is refused by IAM validation; compared in a condition,
    # the caller's ARN is matched against the target's ARN spelled from the target's id.
    condition {
      test     = "ArnEquals"
      variable = "ec2:SourceInstanceARN"
      values   = ["${local.ec2_arn_prefix}:instance/$${ec2:InstanceID}"]
    }
  }

  # The agent ships boot output to streams named "<instance id>/..." and calls only
  # CreateLogStream and PutLogEvents (no retention set, the group exists). No
  # DescribeLogStreams: the stream names are the job ids, and listing them is the one way a
  # worker could learn another job's id, which every call on another job needs.
  statement {
    sid       = "PlatformCloudWatchAgentLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.workers.arn}:log-stream:i-*"]
  }

  statement {
    sid       = "PutJobMetrics"
    effect    = "Allow"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource-level permissions; the namespace is the limit

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }
}

resource "aws_iam_role_policy" "worker" {
  name   = "worker"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}
