# The workers' network: the VPC and subnets named by vpc_id and subnet_ids, or, when none is
# named (as in the seed's tfvars), the account's default VPC and its default subnets. The
# default VPC works (its subnets give instances public addresses, so workers reach the AWS
# APIs and public databases without NAT), but production workers belong in private
# subnets: every plan without vpc_id warns.

data "aws_vpc" "default" {
  count   = var.vpc_id == null ? 1 : 0
  default = true
}

data "aws_subnets" "default" {
  count = var.vpc_id == null ? 1 : 0

  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default[0].id]
  }

  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

locals {
  vpc_id = var.vpc_id != null ? var.vpc_id : one(data.aws_vpc.default[*].id)
  # Sorted: the launcher tries them in order, and the order must not change between plans.
  subnet_ids = var.vpc_id != null ? coalesce(var.subnet_ids, []) : sort(flatten(data.aws_subnets.default[*].ids))
}

check "workers_network" {
  assert {
    condition     = var.vpc_id != null
    error_message = "No vpc_id given: the workers run in the account's default VPC (${coalesce(local.vpc_id, "none found")}) and its default subnets, with public IP addresses. For production, set vpc_id and subnet_ids to a VPC with private subnets (NAT or VPC endpoints)."
  }
}
