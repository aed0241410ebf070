# ---- the seed's outputs ----------------------------------------------------------------------

output "api_endpoint" {
  description = "Base URL of the HTTP API: the value of SEREN_REMOTE_API for clients."
  value       = aws_apigatewayv2_api.http.api_endpoint
}

output "dynamodb_table_name" {
  description = "The jobs table."
  value       = aws_dynamodb_table.jobs.name
}

output "lambda_function_name" {
  description = "The API function (aws_lambda_function.coordinator)."
  value       = aws_lambda_function.coordinator.function_name
}

output "worker_iam_role_name" {
  description = "IAM role (and instance profile) of the workers."
  value       = aws_iam_role.worker.name
}

# ---- ours ------------------------------------------------------------------------------------

output "launcher_function_name" {
  description = "The function that launches workers from the jobs stream."
  value       = aws_lambda_function.service["launcher"].function_name
}

output "reaper_function_name" {
  description = "The scheduled safety-net function."
  value       = aws_lambda_function.service["reaper"].function_name
}

output "api_keys_table_name" {
  description = "The API-keys table (hashed keys); the admin command creates keys in it."
  value       = aws_dynamodb_table.api_keys.name
}

output "dashboard_url" {
  description = "The CloudWatch dashboard."
  value       = "https://${var.aws_region}.console.aws.amazon.com/cloudwatch/home?region=${var.aws_region}#dashboards:name=${aws_cloudwatch_dashboard.service.dashboard_name}"
}

output "dlq_url" {
  description = "Queue of stream batches the launcher failed on."
  value       = aws_sqs_queue.launcher_dlq.url
}

output "launch_template_id" {
  description = "Launch template of the workers."
  value       = aws_launch_template.worker.id
}

output "kms_key_arn" {
  description = "KMS key that encrypts job credentials (api encrypts, workers decrypt)."
  value       = aws_kms_key.credentials.arn
}

output "worker_log_group" {
  description = "Log group of the workers' boot logs; each job's logs are the group <this>/<job id>."
  value       = aws_cloudwatch_log_group.workers.name
}

output "alarms_topic_arn" {
  description = "SNS topic the alarms notify."
  value       = aws_sns_topic.alarms.arn
}
