# Keys, indexes, stream view and TTL attribute equal jobs/tables.py (checked by tests/infra).
# There is no idempotency table: the API derives the job id from the Idempotency-Key
# header and creates the job with a conditional put, so a retried request finds its job.

resource "aws_dynamodb_table" "jobs" {
  name             = var.dynamodb_table_name
  billing_mode     = "PAY_PER_REQUEST"
  hash_key         = "job_id"
  stream_enabled   = true
  stream_view_type = "NEW_AND_OLD_IMAGES"

  attribute {
    name = "job_id"
    type = "S"
  }

  attribute {
    name = "active_status"
    type = "S"
  }

  attribute {
    name = "owner"
    type = "S"
  }

  attribute {
    name = "created_at"
    type = "S"
  }

  attribute {
    name = "status"
    type = "S"
  }

  attribute {
    name = "owner_created"
    type = "S"
  }

  # Sparse: only unfinished jobs carry active_status (the reaper and launcher read it).
  global_secondary_index {
    name            = "active-jobs"
    hash_key        = "active_status"
    range_key       = "created_at"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "owner-jobs"
    hash_key        = "owner"
    range_key       = "created_at"
    projection_type = "ALL"
  }

  # An owner's jobs in one status (owner_created is "<owner>#<created_at>"): GET /jobs?status=.
  global_secondary_index {
    name            = "status-jobs"
    hash_key        = "status"
    range_key       = "owner_created"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.data.arn
  }

  deletion_protection_enabled = var.table_deletion_protection
}

resource "aws_dynamodb_table" "api_keys" {
  name         = local.api_keys_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "key_hash"

  attribute {
    name = "key_hash"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.data.arn
  }

  deletion_protection_enabled = var.table_deletion_protection
}
