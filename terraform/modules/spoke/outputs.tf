output "pool_member" {
  description = "This spoke as a provider_pool member: name, NLB IPs, port, weight and Route 53 health check id."
  value = {
    name            = var.name
    account_id      = var.account_id
    ips             = local.nlb_ips
    port            = var.port
    weight          = var.dns_weight
    health_check_id = aws_route53_health_check.this.id
  }
}

output "account_id" {
  description = "Account the spoke runs in."
  value       = var.account_id
}

output "nlb_arn" {
  description = "ARN of the spoke's Network Load Balancer."
  value       = aws_lb.this.arn
}

output "nlb_ips" {
  description = "Static private IPs of the NLB (what the pool records resolve to)."
  value       = local.nlb_ips
}

output "target_group_arn" {
  description = "ARN of the target group (aws elbv2 describe-target-health --target-group-arn ...)."
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
  description = "CloudWatch log group of the spoke tasks."
  value       = aws_cloudwatch_log_group.this.name
}

output "task_role_arn" {
  description = "Task role ARN (trust it from the role in [bedrock] role_arn when you use one)."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "Task execution role ARN (grant it pull access on the image repository)."
  value       = aws_iam_role.execution.arn
}

output "vpc_id" {
  description = "VPC of the spoke (created or given)."
  value       = local.vpc_id
}

output "transit_gateway_attachment_id" {
  description = "ID of the spoke VPC's Transit Gateway attachment."
  value       = aws_ec2_transit_gateway_vpc_attachment.this.id
}

output "health_check_id" {
  description = "Route 53 health check (CLOUDWATCH_METRIC on HealthyHostCount) of this spoke."
  value       = aws_route53_health_check.this.id
}
