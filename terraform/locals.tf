data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  api_function_name      = "${var.project_name}-api"
  launcher_function_name = "${var.project_name}-launcher"
  reaper_function_name   = "${var.project_name}-reaper"
  api_keys_table_name    = "${var.project_name}-api-keys"
  worker_log_group_name  = "/${var.project_name}/workers"

  package_dir = coalesce(var.lambda_package_dir, "${path.module}/../build")
  # Written by `make package`: the architecture and Python the zips were built for.
  package_manifest = jsondecode(file("${local.package_dir}/package-manifest.json"))

  # Written by `python -m build_tools.generate` from the code, so that Terraform and the
  # local cloud cannot drift apart (tests/infra checks the files are current).
  launcher_filter_patterns = jsondecode(file("${path.module}/generated/launcher_filters.json"))
  api_route_keys           = toset(jsondecode(file("${path.module}/generated/api_routes.json")))

  # The instance tag that marks workers as this deployment's (jobs/instances.py: ManagedBy =
  # the jobs table name, unique per account and region): RunInstances must set it, and the
  # launcher, reaper and workers may terminate only instances that carry it.
  owner_tag_key   = "ManagedBy"
  project_tag_key = "Project"
}
