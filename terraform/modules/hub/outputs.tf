output "url" {
  description = "Base URL clients use (OpenAI base_url = <url>/v1)."
  value       = local.manage_dns ? "https://${var.domain_name}" : "https://${aws_lb.this.dns_name}"
}

output "alb_dns_name" {
  description = "DNS name of the ALB (point your own DNS here when public_zone_id is null)."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "Canonical hosted zone of the ALB (for alias records)."
  value       = aws_lb.this.zone_id
}

output "target_group_arn" {
  description = "Hub target group (aws elbv2 describe-target-health)."
  value       = aws_lb_target_group.this.arn
}

output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "ECS service name."
  value       = aws_ecs_service.this.name
}

output "log_group_name" {
  description = "CloudWatch log group of the hub tasks."
  value       = aws_cloudwatch_log_group.hub.name
}

output "config_secret_arn" {
  description = "Secrets Manager secret holding the hub config."
  value       = aws_secretsmanager_secret.config.arn
}

output "task_security_group_id" {
  description = "Security group of the hub tasks."
  value       = aws_security_group.tasks.id
}

output "web_acl_arn" {
  description = "ARN of the WAF web ACL."
  value       = aws_wafv2_web_acl.this.arn
}

output "redis_endpoint" {
  description = "Primary endpoint of the Redis replication group (null when redis_enabled = false)."
  value       = var.redis_enabled ? aws_elasticache_replication_group.redis[0].primary_endpoint_address : null
}

output "redis_auth_secret_arn" {
  description = "Secret holding the Redis AUTH token (null when redis_enabled = false)."
  value       = var.redis_enabled ? aws_secretsmanager_secret.redis[0].arn : null
}
