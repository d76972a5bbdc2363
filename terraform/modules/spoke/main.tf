# One account's spoke: ECS Fargate service running the spoke image, behind an internal Network
# Load Balancer with static private IPs, reached from the hub VPC through the Transit Gateway.
#
#   hub tasks --TGW--> NLB static IPs :port (TCP) --> spoke tasks :port (HTTP/1.1 + h2c gRPC)
#                      target health: HTTP GET /healthz every 10 s (200 serve / 503 not now)
#   CloudWatch alarm on HealthyHostCount < 1 --> Route 53 CLOUDWATCH_METRIC health check
#   (Route 53 health checkers live on the internet and cannot reach private IPs; see README)

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  tags = merge(var.tags, {
    "switchyard:component" = "spoke"
    "switchyard:spoke"     = var.name
    "switchyard:provider"  = var.provider_name
  })

  create_vpc = var.vpc_id == null

  vpc_id          = local.create_vpc ? module.vpc[0].vpc_id : var.vpc_id
  subnet_ids      = local.create_vpc ? module.vpc[0].private_subnet_ids : var.subnet_ids
  route_table_ids = local.create_vpc ? module.vpc[0].private_route_table_ids : var.route_table_ids
  nlb_subnet_mappings = local.create_vpc ? [
    for i, subnet in module.vpc[0].private_subnet_ids : {
      subnet_id            = subnet
      private_ipv4_address = cidrhost(module.vpc[0].private_subnet_cidrs[i], var.nlb_ip_host_number)
    }
  ] : var.nlb_subnet_mappings
  nlb_ips = [for m in local.nlb_subnet_mappings : m.private_ipv4_address]

  region       = data.aws_region.current.id
  cluster_name = "${var.name}-spoke"
  service_name = "${var.name}-spoke"

  # Secrets may carry a ":json-key:version-stage:version-id" suffix; IAM wants the secret's ARN.
  injected_secret_arns = distinct([for arn in values(var.secrets) : join(":", slice(split(":", arn), 0, 7))])

  environment = merge(
    {
      SWITCHYARD_CONFIG_TOML = var.config_toml
      SWITCHYARD_LOG_FORMAT  = "json"
      RUST_LOG               = "info"
      SWITCHYARD_HEALTH_URL  = "http://127.0.0.1:${var.port}/healthz"
    },
    var.environment,
  )

  listen_ok = can(regex("(?m)^\\s*listen\\s*=\\s*\"(0\\.0\\.0\\.0|\\[::\\]):${var.port}\"", var.config_toml))
  drain_ok = (
    can(regex("(?m)^\\s*drain_timeout\\s*=", var.config_toml))
    ? can(regex("(?m)^\\s*drain_timeout\\s*=\\s*\"${var.drain_timeout_seconds}s\"", var.config_toml))
    : var.drain_timeout_seconds == 30
  )
  # The NLB balances connections; the spoke ends each after max_connection_age (±10 %) so hubs
  # reconnect and calls spread over the tasks (docs/operations.md, Balancing).
  age_ok = (
    can(regex("(?m)^\\s*max_connection_age\\s*=", var.config_toml))
    ? can(regex("(?m)^\\s*max_connection_age\\s*=\\s*\"${var.max_connection_age_seconds}s\"", var.config_toml))
    : var.max_connection_age_seconds == 60
  )
  # A deregistered task must have lost every hub connection (each GOAWAY'd within
  # 1.1 × max_connection_age, the hub reconnecting through the NLB to another task) before ECS
  # sends it SIGTERM: then no call meets a draining task.
  deregistration_ok = var.deregistration_delay_seconds >= ceil(var.max_connection_age_seconds * 1.1) + 10
}

module "vpc" {
  count  = local.create_vpc ? 1 : 0
  source = "../vpc"

  name        = "${var.name}-spoke"
  cidr        = var.vpc_cidr
  azs         = var.azs
  kms_key_arn = var.kms_key_arn
  tags        = local.tags
}

# ---------------------------------------------------------------------------------------------
# Transit Gateway attachment (the TGW lives in the hub account, shared through RAM)

resource "aws_ram_resource_share_accepter" "tgw" {
  count     = var.accept_ram_share ? 1 : 0
  share_arn = var.ram_resource_share_arn

  lifecycle {
    precondition {
      condition     = var.ram_resource_share_arn != null
      error_message = "accept_ram_share = true needs ram_resource_share_arn (network module output)."
    }
  }
}

resource "aws_ec2_transit_gateway_vpc_attachment" "this" {
  transit_gateway_id = var.transit_gateway_id
  vpc_id             = local.vpc_id
  subnet_ids         = local.subnet_ids
  dns_support        = "enable"
  tags               = merge(local.tags, { Name = "${var.name}-spoke" })

  # The NLB claims its static IPs before the attachment's interfaces take addresses in the
  # same subnets.
  depends_on = [aws_ram_resource_share_accepter.tgw, aws_lb.this]
}

locals {
  spoke_routes = {
    for pair in setproduct(range(length(local.route_table_ids)), var.hub_cidrs) : "${pair[0]}|${pair[1]}" => {
      route_table_id = local.route_table_ids[pair[0]]
      cidr           = pair[1]
    }
  }
}

resource "aws_route" "to_hub" {
  for_each               = local.spoke_routes
  route_table_id         = each.value.route_table_id
  destination_cidr_block = each.value.cidr
  transit_gateway_id     = var.transit_gateway_id
  depends_on             = [aws_ec2_transit_gateway_vpc_attachment.this]
}

# ---------------------------------------------------------------------------------------------
# Security groups: hubs -> NLB -> tasks; tasks -> HTTPS upstreams

resource "aws_security_group" "nlb" {
  name_prefix = "${var.name}-spoke-nlb-"
  description = "Switchyard spoke ${var.name}: NLB, reachable from the hub CIDRs only"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-spoke-nlb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "nlb_from_hubs" {
  for_each          = toset(var.hub_cidrs)
  security_group_id = aws_security_group.nlb.id
  description       = "Hub gRPC and HTTP to the spoke port"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.port
  to_port           = var.port
}

resource "aws_vpc_security_group_egress_rule" "nlb_to_tasks" {
  security_group_id            = aws_security_group.nlb.id
  description                  = "Forward traffic and health checks to the spoke tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
}

resource "aws_security_group" "tasks" {
  name_prefix = "${var.name}-spoke-tasks-"
  description = "Switchyard spoke ${var.name}: tasks, reachable from the NLB only"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-spoke-tasks" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_nlb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Traffic and /healthz checks from the NLB"
  referenced_security_group_id = aws_security_group.nlb.id
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to Bedrock, STS, ECR, CloudWatch Logs, Secrets Manager and third-party model APIs"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "tasks_upstreams" {
  for_each          = { for e in var.upstream_egress : "${e.cidr}:${e.port}" => e }
  security_group_id = aws_security_group.tasks.id
  description       = "Upstream model server ${each.key}"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
}

# ---------------------------------------------------------------------------------------------
# Network Load Balancer with static private IPs

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:NLB access logs are written only for TLS listeners; this listener is plain TCP carrying h2c gRPC. Flow logs on the VPC cover connection records.
  name                             = "${var.name}-spoke"
  internal                         = true
  load_balancer_type               = "network"
  security_groups                  = [aws_security_group.nlb.id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.deletion_protection
  tags                             = local.tags

  dynamic "subnet_mapping" {
    for_each = local.nlb_subnet_mappings
    content {
      subnet_id            = subnet_mapping.value.subnet_id
      private_ipv4_address = subnet_mapping.value.private_ipv4_address
    }
  }

  lifecycle {
    precondition {
      condition     = data.aws_caller_identity.current.account_id == var.account_id
      error_message = "The AWS provider given to spoke \"${var.name}\" is for account ${data.aws_caller_identity.current.account_id}, not var.account_id = ${var.account_id}. Check the providers = { aws = ... } mapping."
    }
    precondition {
      condition     = length(local.nlb_subnet_mappings) >= 1 && length(local.subnet_ids) >= 1
      error_message = "An existing VPC needs subnet_ids and nlb_subnet_mappings (one static IP per AZ)."
    }
  }
}

resource "aws_lb_target_group" "this" {
  name                 = "${var.name}-spoke"
  vpc_id               = local.vpc_id
  target_type          = "ip"
  protocol             = "TCP"
  port                 = var.port
  deregistration_delay = var.deregistration_delay_seconds
  # Keep established HTTP/2 connections (and the streams on them) through deregistration: the
  # spoke ends them itself with a graceful GOAWAY (max_connection_age, or its drain after
  # SIGTERM), so no call in flight is cut.
  connection_termination = false
  tags                   = local.tags

  lifecycle {
    precondition {
      condition     = local.deregistration_ok
      error_message = "deregistration_delay_seconds (${var.deregistration_delay_seconds}) must be at least 1.1 × max_connection_age_seconds + 10 (${ceil(var.max_connection_age_seconds * 1.1) + 10}): hubs leave a deregistered task only when its connections reach their age."
    }
  }

  health_check {
    enabled             = true
    protocol            = "HTTP"
    path                = "/healthz"
    port                = "traffic-port"
    matcher             = "200"
    interval            = var.health_check_interval_seconds
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "this" {
  #checkov:skip=CKV_AWS_2:Hub-to-spoke traffic is gRPC over h2c inside the private network (VPC + Transit Gateway); TLS/mTLS between hub and spoke is an optional later feature of the binaries, not of the load balancer.
  #checkov:skip=CKV_AWS_103:A TCP pass-through listener has no TLS policy to set; hub-to-spoke gRPC is h2c inside the private network.
  load_balancer_arn = aws_lb.this.arn
  port              = var.port
  protocol          = "TCP"
  tags              = local.tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}

# ---------------------------------------------------------------------------------------------
# Logs

resource "aws_cloudwatch_log_group" "this" {
  name              = "/switchyard/${var.name}/spoke"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = local.tags
}

# ---------------------------------------------------------------------------------------------
# IAM: execution role (pull image, write logs, inject var.secrets) and task role (Bedrock
# invoke on the configured models only, optional STS role, optional named secrets)

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name}-spoke-exec-"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  count = length(local.injected_secret_arns) > 0 ? 1 : 0

  statement {
    sid       = "InjectNamedSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.injected_secret_arns
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  count  = length(local.injected_secret_arns) > 0 ? 1 : 0
  name   = "inject-named-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets[0].json
}

resource "aws_iam_role" "task" {
  name_prefix        = "${var.name}-spoke-task-"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

locals {
  task_statements = concat(
    length(var.bedrock_model_arns) > 0 ? [{
      sid       = "InvokeConfiguredModels"
      actions   = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
      resources = var.bedrock_model_arns
    }] : [],
    length(var.assume_role_arns) > 0 ? [{
      sid       = "AssumeConfiguredRole"
      actions   = ["sts:AssumeRole"]
      resources = var.assume_role_arns
    }] : [],
    length(var.runtime_secret_arns) > 0 ? [{
      sid       = "ReadNamedSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = var.runtime_secret_arns
    }] : [],
  )
}

data "aws_iam_policy_document" "task" {
  count = length(local.task_statements) > 0 ? 1 : 0

  dynamic "statement" {
    for_each = local.task_statements
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }
}

resource "aws_iam_role_policy" "task" {
  count  = length(local.task_statements) > 0 ? 1 : 0
  name   = "spoke-upstreams"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task[0].json
}

# ---------------------------------------------------------------------------------------------
# ECS cluster, task definition, service

resource "aws_ecs_cluster" "this" {
  name = local.cluster_name
  tags = local.tags

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.service_name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  tags                     = local.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Scratch space for the rendered config: the root filesystem is read-only. The image creates
  # /run/switchyard owned by the non-root user, and Fargate keeps that ownership for the volume.
  volume {
    name = "run"
  }

  container_definitions = jsonencode([
    {
      name                   = "spoke"
      image                  = var.image
      essential              = true
      user                   = "10001:10001"
      readonlyRootFilesystem = true
      stopTimeout            = var.drain_timeout_seconds + 15
      portMappings = [{
        containerPort = var.port
        protocol      = "tcp"
        name          = "spoke"
      }]
      environment = [for k, v in local.environment : { name = k, value = v }]
      secrets     = [for k, v in var.secrets : { name = k, valueFrom = v }]
      mountPoints = [{
        sourceVolume  = "run"
        containerPath = "/run/switchyard"
        readOnly      = false
      }]
      linuxParameters = {
        initProcessEnabled = true
      }
      # Liveness, not readiness: any HTTP answer (200 or 503) means the process is alive.
      healthCheck = {
        command     = ["CMD-SHELL", "curl -sS -o /dev/null --max-time 2 http://127.0.0.1:${var.port}/healthz || exit 1"]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "spoke"
          mode                  = "non-blocking"
          max-buffer-size       = "25m"
        }
      }
    }
  ])

  lifecycle {
    precondition {
      condition     = local.listen_ok
      error_message = "config_toml must contain listen = \"0.0.0.0:${var.port}\" (the NLB forwards to port ${var.port})."
    }
    precondition {
      condition     = local.drain_ok
      error_message = "drain_timeout_seconds (${var.drain_timeout_seconds}) must match the config's drain_timeout (\"${var.drain_timeout_seconds}s\"; the spoke's default is 30s)."
    }
    precondition {
      condition     = local.age_ok
      error_message = "max_connection_age_seconds (${var.max_connection_age_seconds}) must match the config's max_connection_age (\"${var.max_connection_age_seconds}s\"; the spoke's default is 60s)."
    }
  }
}

resource "aws_ecs_service" "this" {
  name                               = local.service_name
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = var.desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = var.health_check_grace_period_seconds
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"
  tags                               = local.tags

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = local.subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this.arn
    container_name   = "spoke"
    container_port   = var.port
  }

  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.this, aws_iam_role_policy_attachment.execution]
}

# ---------------------------------------------------------------------------------------------
# Auto-scaling: CPU, plus request count per task when request_metrics are given

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.this.name}"
  min_capacity       = var.min_capacity
  max_capacity       = var.max_capacity

  lifecycle {
    precondition {
      condition     = var.min_capacity <= var.max_capacity
      error_message = "min_capacity must not exceed max_capacity."
    }
  }
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${local.service_name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_out_cooldown = 60
    # Scale in slowly: a removed task drains its streams first.
    scale_in_cooldown = 300

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

locals {
  request_ids        = [for i in range(length(var.request_metrics)) : "m${i}"]
  request_expression = length(local.request_ids) > 0 ? "(${join(" + ", local.request_ids)}) / tasks" : ""
}

resource "aws_appautoscaling_policy" "requests" {
  count              = length(var.request_metrics) > 0 ? 1 : 0
  name               = "${local.service_name}-requests-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.requests_per_task_per_minute
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    customized_metric_specification {
      dynamic "metrics" {
        for_each = var.request_metrics
        content {
          id          = "m${metrics.key}"
          return_data = false

          metric_stat {
            stat = metrics.value.stat

            metric {
              namespace   = metrics.value.namespace
              metric_name = metrics.value.metric_name

              dynamic "dimensions" {
                for_each = metrics.value.dimensions
                content {
                  name  = dimensions.key
                  value = dimensions.value
                }
              }
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"

            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this.name
            }
            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.this.name
            }
          }
        }
      }

      metrics {
        id          = "per_task"
        label       = "requests per task per minute"
        expression  = local.request_expression
        return_data = true
      }
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Health for DNS: alarm on the NLB's healthy targets, and a Route 53 health check on the alarm.
# The health check lives in this (spoke) account because a CLOUDWATCH_METRIC health check must
# be in the alarm's account; the record in the hub account's zone references it by id.

resource "aws_cloudwatch_metric_alarm" "no_healthy_targets" {
  alarm_name          = "${var.name}-spoke-no-healthy-targets"
  alarm_description   = "Switchyard spoke ${var.name}: no target passes GET /healthz. Drives the Route 53 health check of the spoke's pool records."
  namespace           = "AWS/NetworkELB"
  metric_name         = "HealthyHostCount"
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  tags                = local.tags

  dimensions = {
    LoadBalancer = aws_lb.this.arn_suffix
    TargetGroup  = aws_lb_target_group.this.arn_suffix
  }
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_targets" {
  alarm_name          = "${var.name}-spoke-unhealthy-targets"
  alarm_description   = "Switchyard spoke ${var.name}: some targets failed /healthz for 15 minutes (quota exhausted, upstream down, credentials missing, or a hung task: see docs/operations.md)."
  namespace           = "AWS/NetworkELB"
  metric_name         = "UnHealthyHostCount"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 15
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags

  dimensions = {
    LoadBalancer = aws_lb.this.arn_suffix
    TargetGroup  = aws_lb_target_group.this.arn_suffix
  }
}

resource "aws_route53_health_check" "this" {
  type                            = "CLOUDWATCH_METRIC"
  cloudwatch_alarm_name           = aws_cloudwatch_metric_alarm.no_healthy_targets.alarm_name
  cloudwatch_alarm_region         = local.region
  insufficient_data_health_status = "LastKnownStatus"
  tags                            = merge(local.tags, { Name = "${var.name}-spoke" })
}
