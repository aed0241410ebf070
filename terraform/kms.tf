# Three keys with different audiences:
# - `credentials` encrypts job connection URLs. Its key policy is the access control:
#   only the api role may Encrypt and only the worker role may Decrypt, and both only
#   under the job-credentials encryption context (jobs/crypto.py).
# - `request_mac` (HMAC) fingerprints submitted requests for idempotent retries: only the api
#   role may GenerateMac, so a stored fingerprint cannot be tested against guessed passwords.
# - `data` encrypts the service's resources at rest (tables, stream, DLQ, SNS, logs);
#   AWS services use it on the callers' behalf.

data "aws_iam_policy_document" "credentials_key" {
  # checkov:skip=CKV_AWS_111:A key policy's Resource "*" means this key only; every statement names its principal.
  # checkov:skip=CKV_AWS_356:A key policy's Resource "*" means this key only, the one form KMS accepts.
  # checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key only; PutKeyPolicy is for the account's key administrators.
  statement {
    sid       = "KeyAdministrationWithoutCryptography"
    effect    = "Allow"
    resources = ["*"]
    actions = [
      "kms:CancelKeyDeletion",
      "kms:CreateAlias",
      "kms:DeleteAlias",
      "kms:DescribeKey",
      "kms:DisableKey",
      "kms:DisableKeyRotation",
      "kms:EnableKey",
      "kms:EnableKeyRotation",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListAliases",
      "kms:ListResourceTags",
      "kms:PutKeyPolicy",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:UpdateAlias",
      "kms:UpdateKeyDescription",
    ]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "ApiEncryptsJobCredentials"
    effect    = "Allow"
    actions   = ["kms:Encrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.api.arn]
    }

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

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = ["job_id", "purpose"]
    }
  }

  statement {
    sid       = "LaunchersBindJobCredentialsToAnInstance"
    effect    = "Allow"
    actions   = ["kms:ReEncryptFrom", "kms:ReEncryptTo"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.launcher.arn, aws_iam_role.reaper.arn]
    }

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

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = ["job_id", "purpose", "instance_arn"]
    }

    condition {
      test     = "Bool"
      variable = "kms:ReEncryptOnSameKey"
      values   = ["true"]
    }
  }

  # A worker decrypts only credentials bound to the instance it runs on: the context's
  # instance_arn must be the calling instance (ec2:SourceInstanceARN, set by AWS on requests
  # signed with an instance profile's credentials; escaped for Terraform).
  statement {
    sid       = "WorkersDecryptOnlyTheirInstancesJobCredentials"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.worker.arn]
    }

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

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:instance_arn"
      values   = ["$${ec2:SourceInstanceARN}"]
    }

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = ["job_id", "purpose", "instance_arn"]
    }
  }
}

resource "aws_kms_key" "credentials" {
  description             = "${var.project_name}: job connection credentials"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.credentials_key.json
}

resource "aws_kms_alias" "credentials" {
  name          = "alias/${var.project_name}-credentials"
  target_key_id = aws_kms_key.credentials.key_id
}

data "aws_iam_policy_document" "request_mac_key" {
  # checkov:skip=CKV_AWS_111:A key policy's Resource "*" means this key only; every statement names its principal.
  # checkov:skip=CKV_AWS_356:A key policy's Resource "*" means this key only, the one form KMS accepts.
  # checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key only; PutKeyPolicy is for the account's key administrators.
  statement {
    sid       = "KeyAdministrationWithoutCryptography"
    effect    = "Allow"
    resources = ["*"]
    actions = [
      "kms:CancelKeyDeletion",
      "kms:CreateAlias",
      "kms:DeleteAlias",
      "kms:DescribeKey",
      "kms:DisableKey",
      "kms:EnableKey",
      "kms:GetKeyPolicy",
      "kms:ListAliases",
      "kms:ListResourceTags",
      "kms:PutKeyPolicy",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:UpdateAlias",
      "kms:UpdateKeyDescription",
    ]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "ApiFingerprintsRequests"
    effect    = "Allow"
    actions   = ["kms:GenerateMac"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.api.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:MacAlgorithm"
      values   = ["HMAC_SHA_256"]
    }
  }
}

resource "aws_kms_key" "request_mac" {
  # checkov:skip=CKV_AWS_7:KMS does not rotate HMAC keys; rotating by hand would turn in-flight retries into 422s.
  description              = "${var.project_name}: request fingerprints (HMAC)"
  key_usage                = "GENERATE_VERIFY_MAC"
  customer_master_key_spec = "HMAC_256"
  deletion_window_in_days  = 30
  policy                   = data.aws_iam_policy_document.request_mac_key.json
}

resource "aws_kms_alias" "request_mac" {
  name          = "alias/${var.project_name}-request-mac"
  target_key_id = aws_kms_key.request_mac.key_id
}

data "aws_iam_policy_document" "data_key" {
  # checkov:skip=CKV_AWS_111:A key policy's Resource "*" means this key only; every statement names its principal.
  # checkov:skip=CKV_AWS_356:A key policy's Resource "*" means this key only, the one form KMS accepts.
  # checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key only; PutKeyPolicy is for the account's key administrators.
  statement {
    sid       = "AccountAdministersAndDelegatesToIam"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "DynamoDbUsesKeyForCallersInAccount"
    effect    = "Allow"
    resources = ["*"]
    actions = [
      "kms:CreateGrant",
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
    ]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["dynamodb.${var.aws_region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsOurLogGroups"
    effect    = "Allow"
    resources = ["*"]
    actions = [
      "kms:Decrypt*",
      "kms:Describe*",
      "kms:Encrypt*",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
    ]

    principals {
      type        = "Service"
      identifiers = ["logs.${var.aws_region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:*"]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublishToEncryptedTopic"
    effect    = "Allow"
    resources = ["*"]
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "data" {
  description             = "${var.project_name}: tables, stream, queue, topic and logs at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.data_key.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${var.project_name}-data"
  target_key_id = aws_kms_key.data.key_id
}
