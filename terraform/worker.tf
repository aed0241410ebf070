# The worker instances: a launch template the launcher and reaper run from (they add the
# subnet, instance type, user-data and tags per job), a security group, and the workers' log
# group: the instances' boot logs (streams "<instance id>/..."). Each job's logs are a group
# of its own under its name, "<name>/<job id>", which the launcher creates with this
# group's retention and key and tags for the instance it started (jobs/job_logs.py).

resource "aws_cloudwatch_log_group" "workers" {
  name = local.worker_log_group_name
  # checkov:skip=CKV_AWS_338:Job logs are kept var.log_retention_days (7 by default, as the seed specifies); the API serves them only while a job is recent.
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_security_group" "worker" {
  name        = "${var.project_name}-worker"
  description = "Replication workers: no inbound traffic; outbound to PostgreSQL and HTTPS only"
  vpc_id      = local.vpc_id

  lifecycle {
    precondition {
      condition     = (var.vpc_id == null) == (var.subnet_ids == null)
      error_message = "Set vpc_id and subnet_ids together (the subnets must be in that VPC), or neither for the account's default VPC."
    }
    precondition {
      condition     = length(local.subnet_ids) > 0
      error_message = "The account's default VPC has no default subnets: set vpc_id and subnet_ids."
    }
  }
}

resource "aws_vpc_security_group_egress_rule" "worker_https" {
  security_group_id = aws_security_group.worker.id
  description       = "HTTPS to the AWS APIs (DynamoDB, KMS, CloudWatch, EC2)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

locals {
  database_egress_cidrs = var.database_egress_cidrs != null ? var.database_egress_cidrs : jsondecode(file("${path.module}/generated/public_ipv4_cidrs.json"))
}

resource "aws_vpc_security_group_egress_rule" "worker_postgresql" {
  for_each = { for pair in setproduct(local.database_egress_cidrs, var.database_ports) : "${pair[0]}:${pair[1]}" => pair }

  security_group_id = aws_security_group.worker.id
  description       = "PostgreSQL sources and targets"
  ip_protocol       = "tcp"
  from_port         = each.value[1]
  to_port           = each.value[1]
  cidr_ipv4         = each.value[0]
}

resource "aws_launch_template" "worker" {
  name                                 = "${var.project_name}-worker"
  description                          = "Replication worker; the launcher sets subnet, instance type, user-data and job tags"
  image_id                             = var.worker_ami_id
  instance_type                        = var.worker_instance_type
  instance_initiated_shutdown_behavior = "terminate"
  ebs_optimized                        = true
  update_default_version               = true
  vpc_security_group_ids               = [aws_security_group.worker.id]

  iam_instance_profile {
    arn = aws_iam_instance_profile.worker.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  monitoring {
    enabled = true
  }

  block_device_mappings {
    device_name = var.worker_root_device_name

    ebs {
      volume_type           = "gp3"
      volume_size           = var.worker_root_volume_size_gb
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags = {
      (local.project_tag_key) = var.project_name
      (local.owner_tag_key)   = var.dynamodb_table_name
      Role                    = "replication-worker"
    }
  }

  tag_specifications {
    resource_type = "volume"
    tags = {
      (local.project_tag_key) = var.project_name
      (local.owner_tag_key)   = var.dynamodb_table_name
      Role                    = "replication-worker"
    }
  }
}
