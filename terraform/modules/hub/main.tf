# The hub: ECS Fargate service behind an Application Load Balancer (HTTPS, ACM certificate) with
# AWS WAF, its config (tenants' API-key hashes) in Secrets Manager, optional ElastiCache Redis.
#
#   clients --HTTPS--> ALB (+WAF rate rule) --HTTP--> hub tasks :8080 --TGW--> spoke NLBs :50051
#
# Why an ALB and not API Gateway: API Gateway HTTP APIs cap an integration at 30 seconds, which
# cuts off streamed (SSE) completions that routinely run longer, and they buffer nothing useful
# for us in exchange. An ALB keeps a response open as long as bytes flow (idle_timeout between
# bytes, up to 4000 s), balances on least outstanding requests (good for long streams), drains
# deregistered targets for a configurable delay, and takes a WAF web ACL directly.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  tags = merge(var.tags, { "switchyard:component" = "hub" })

  region       = data.aws_region.current.id
  cluster_name = "${var.name}-hub"
  service_name = "${var.name}-hub"
  create_cert  = var.certificate_arn == null
  manage_dns   = var.domain_name != null && var.public_zone_id != null

  environment = merge(
    {
      SWITCHYARD_LOG_FORMAT = "json"
      RUST_LOG              = "info"
      SWITCHYARD_HEALTH_URL = "http://127.0.0.1:${var.container_port}/healthz"
    },
    var.otlp_endpoint == null ? {} : { OTEL_EXPORTER_OTLP_ENDPOINT = var.otlp_endpoint },
    var.environment,
  )

  # With Redis, tenant quotas are shared by every hub task: the module appends the [quota]
  # section; the URL (with the AUTH token) reaches the container as a secret env var, never in
  # the config. `replicas` is what each task divides limits by while Redis is unreachable.
  quota_toml = var.redis_enabled ? join("\n", [
    "",
    "[quota]",
    "store = \"redis\"",
    "redis_url_env = \"SWITCHYARD_QUOTA_REDIS_URL\"",
    "replicas = ${var.desired_count}",
    "",
  ]) : ""

  # Whether the (sensitive) config listens on the container port; a yes/no reveals nothing.
  listen_ok = nonsensitive(can(regex("(?m)^\\s*listen\\s*=\\s*\"(0\\.0\\.0\\.0|\\[::\\]):${var.container_port}\"", var.config_toml)))
}

# ---------------------------------------------------------------------------------------------
# Config secret: the whole hub TOML (it holds the tenants' API-key SHA-256 hashes)

resource "aws_secretsmanager_secret" "config" {
  #checkov:skip=CKV2_AWS_57:Not a credential that Secrets Manager can rotate: it is the hub config holding API-key hashes. Keys are rotated by adding the new hash, redeploying, then removing the old one (docs/operations.md).
  name_prefix             = "${var.name}/hub/config-"
  description             = "Switchyard hub config (TOML with tenant API-key SHA-256 hashes)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "config" {
  secret_id     = aws_secretsmanager_secret.config.id
  secret_string = "${var.config_toml}${local.quota_toml}"
}

# ---------------------------------------------------------------------------------------------
# Logs

resource "aws_cloudwatch_log_group" "hub" {
  name              = "/switchyard/${var.name}/hub"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "waf" {
  # WAF requires the aws-waf-logs- prefix.
  name              = "aws-waf-logs-${var.name}-hub"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = local.tags
}

# ---------------------------------------------------------------------------------------------
# IAM

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
  name_prefix        = "${var.name}-hub-exec-"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_config" {
  statement {
    sid       = "InjectHubConfig"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([aws_secretsmanager_secret.config.arn], aws_secretsmanager_secret.redis[*].arn)
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "DecryptHubConfig"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "execution_config" {
  name   = "inject-hub-config"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_config.json
}

# The hub calls no AWS API today; the task role exists so that later features (Redis IAM auth,
# Secrets Manager references) get permissions here rather than on the execution role.
resource "aws_iam_role" "task" {
  name_prefix        = "${var.name}-hub-task-"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

# ---------------------------------------------------------------------------------------------
# Security groups: clients -> ALB -> tasks -> spokes (and Redis)

resource "aws_security_group" "alb" {
  name_prefix = "${var.name}-hub-alb-"
  description = "Switchyard hub ALB: HTTPS from clients"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-hub-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each          = toset(var.ingress_cidrs)
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from clients"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Requests and health checks to the hub tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_security_group" "tasks" {
  name_prefix = "${var.name}-hub-tasks-"
  description = "Switchyard hub tasks: from the ALB, to the spokes"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-hub-tasks" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Requests and health checks from the ALB"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_spokes" {
  for_each          = toset(var.spoke_cidrs)
  security_group_id = aws_security_group.tasks.id
  description       = "gRPC to spoke NLBs through the Transit Gateway"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.spoke_port
  to_port           = var.spoke_port
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to ECR, CloudWatch Logs, Secrets Manager and the OTLP collector"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# ---------------------------------------------------------------------------------------------
# Certificate and DNS (optional)

resource "aws_acm_certificate" "this" {
  count             = local.create_cert ? 1 : 0
  domain_name       = var.domain_name
  validation_method = "DNS"
  tags              = local.tags

  lifecycle {
    create_before_destroy = true
    precondition {
      condition     = local.manage_dns
      error_message = "Without certificate_arn the module requests a certificate: set domain_name and public_zone_id."
    }
  }
}

resource "aws_route53_record" "cert_validation" {
  for_each = local.create_cert ? {
    for o in aws_acm_certificate.this[0].domain_validation_options : o.domain_name => o
  } : {}
  zone_id         = var.public_zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "this" {
  count                   = local.create_cert ? 1 : 0
  certificate_arn         = aws_acm_certificate.this[0].arn
  validation_record_fqdns = [for r in aws_route53_record.cert_validation : r.fqdn]
}

locals {
  certificate_arn = local.create_cert ? aws_acm_certificate_validation.this[0].certificate_arn : var.certificate_arn
}

resource "aws_route53_record" "alias" {
  count   = local.manage_dns ? 1 : 0
  zone_id = var.public_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}

# ---------------------------------------------------------------------------------------------
# Application Load Balancer

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:Access logs are optional (access_logs_bucket); the bucket, its retention and its ELB delivery policy belong to the account's logging setup, not to this module.
  #checkov:skip=CKV2_AWS_20:There is no HTTP listener to redirect: the ALB listens on 443 only.
  #checkov:skip=CKV2_AWS_76:Log4j (Log4JRCE) is covered by AWSManagedRulesKnownBadInputsRuleSet, attached below. This check also demands the Anonymous IP list, whose HostingProviderIPList rule would block API clients that run in a cloud.
  name                       = "${var.name}-hub"
  internal                   = var.internal
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.alb_subnet_ids
  idle_timeout               = var.idle_timeout_seconds
  drop_invalid_header_fields = true
  desync_mitigation_mode     = "defensive"
  enable_deletion_protection = var.deletion_protection
  tags                       = local.tags

  dynamic "access_logs" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = "${var.name}-hub"
      enabled = true
    }
  }

  lifecycle {
    precondition {
      condition     = data.aws_caller_identity.current.account_id == var.account_id
      error_message = "The AWS provider given to the hub is for account ${data.aws_caller_identity.current.account_id}, not var.account_id = ${var.account_id}."
    }
  }
}

resource "aws_lb_target_group" "this" {
  name                          = "${var.name}-hub"
  vpc_id                        = var.vpc_id
  target_type                   = "ip"
  protocol                      = "HTTP"
  protocol_version              = "HTTP1"
  port                          = var.container_port
  deregistration_delay          = var.deregistration_delay_seconds
  load_balancing_algorithm_type = "least_outstanding_requests"
  tags                          = local.tags

  health_check {
    enabled             = true
    protocol            = "HTTP"
    path                = "/healthz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = local.certificate_arn
  tags              = local.tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}

# ---------------------------------------------------------------------------------------------
# WAF: per-IP rate-based rule (answers 429 in the OpenAI error shape) + AWS known-bad-inputs.
# The AWS common rule set is deliberately absent: its 8 KB body-size rule would block ordinary
# long prompts.

resource "aws_wafv2_web_acl" "this" {
  name        = "${var.name}-hub"
  description = "Switchyard hub: per-IP flood guard and known bad inputs"
  scope       = "REGIONAL"
  tags        = local.tags

  default_action {
    allow {}
  }

  custom_response_body {
    key          = "rate_limited"
    content_type = "APPLICATION_JSON"
    content      = jsonencode({ error = { message = "Too many requests from this address; retry later.", type = "rate_limit_error", code = "gateway_rate_limited" } })
  }

  rule {
    name     = "rate-limit-per-ip"
    priority = 0

    action {
      block {
        custom_response {
          response_code            = 429
          custom_response_body_key = "rate_limited"
          response_header {
            name  = "Retry-After"
            value = tostring(var.waf_rate_window_seconds)
          }
        }
      }
    }

    statement {
      rate_based_statement {
        limit                 = var.waf_rate_limit
        evaluation_window_sec = var.waf_rate_window_seconds
        aggregate_key_type    = "IP"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-hub-rate-limit"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-known-bad-inputs"
    priority = 1

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-hub-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name}-hub"
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "this" {
  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.this.arn
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  resource_arn            = aws_wafv2_web_acl.this.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]

  # Client credentials never reach the logs.
  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
  redacted_fields {
    single_header {
      name = "x-api-key"
    }
  }
}

# ---------------------------------------------------------------------------------------------
# ECS

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

  volume {
    name = "run"
  }

  container_definitions = jsonencode([
    {
      name                   = "hub"
      image                  = var.image
      essential              = true
      user                   = "10001:10001"
      readonlyRootFilesystem = true
      stopTimeout            = var.drain_timeout_seconds + 15
      portMappings = [{
        containerPort = var.container_port
        protocol      = "tcp"
        name          = "hub"
      }]
      environment = [for k, v in local.environment : { name = k, value = v }]
      secrets = concat(
        [{
          name      = "SWITCHYARD_CONFIG_TOML"
          valueFrom = aws_secretsmanager_secret.config.arn
        }],
        [for s in aws_secretsmanager_secret.redis : {
          name      = "SWITCHYARD_QUOTA_REDIS_URL"
          valueFrom = s.arn
        }],
      )
      mountPoints = [{
        sourceVolume  = "run"
        containerPath = "/run/switchyard"
        readOnly      = false
      }]
      linuxParameters = {
        initProcessEnabled = true
      }
      healthCheck = {
        command     = ["CMD-SHELL", "curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:${var.container_port}/healthz || exit 1"]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = 20
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.hub.name
          awslogs-region        = local.region
          awslogs-stream-prefix = "hub"
          mode                  = "non-blocking"
          max-buffer-size       = "25m"
        }
      }
    }
  ])

  lifecycle {
    precondition {
      condition     = local.listen_ok
      error_message = "config_toml must contain listen = \"0.0.0.0:<container_port>\" so that the ALB can reach the hub."
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
  health_check_grace_period_seconds  = 60
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"
  tags                               = local.tags

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this.arn
    container_name   = "hub"
    container_port   = var.container_port
  }

  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.https, aws_iam_role_policy.execution_config, aws_secretsmanager_secret_version.config]
}

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
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "requests" {
  name               = "${local.service_name}-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.requests_per_target_per_minute
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.this.arn_suffix}/${aws_lb_target_group.this.arn_suffix}"
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Optional ElastiCache Redis (shared tenant quotas across hub replicas)

resource "random_password" "redis" {
  count   = var.redis_enabled ? 1 : 0
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "redis" {
  #checkov:skip=CKV2_AWS_57:The AUTH token comes from random_password and must change together with the replication group (auth_token_update_strategy = ROTATE on re-apply); a Secrets Manager rotation Lambda would change the secret behind the cluster's back.
  count                   = var.redis_enabled ? 1 : 0
  name_prefix             = "${var.name}/hub/redis-auth-"
  description             = "URL with AUTH token of the Switchyard hub's Redis (rediss://)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "redis" {
  count     = var.redis_enabled ? 1 : 0
  secret_id = aws_secretsmanager_secret.redis[0].id
  # The whole URL (TLS, AUTH token, primary endpoint): the hub reads it from
  # SWITCHYARD_QUOTA_REDIS_URL (its config names only the variable).
  secret_string = "rediss://:${random_password.redis[0].result}@${aws_elasticache_replication_group.redis[0].primary_endpoint_address}:6379"
}

resource "aws_security_group" "redis" {
  count       = var.redis_enabled ? 1 : 0
  name_prefix = "${var.name}-hub-redis-"
  description = "Switchyard hub Redis: from the hub tasks only"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-hub-redis" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  count                        = var.redis_enabled ? 1 : 0
  security_group_id            = aws_security_group.redis[0].id
  description                  = "Redis from the hub tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_redis" {
  count                        = var.redis_enabled ? 1 : 0
  security_group_id            = aws_security_group.tasks.id
  description                  = "Redis (shared quotas)"
  referenced_security_group_id = aws_security_group.redis[0].id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
}

resource "aws_elasticache_subnet_group" "redis" {
  count      = var.redis_enabled ? 1 : 0
  name       = "${var.name}-hub-redis"
  subnet_ids = var.private_subnet_ids
  tags       = local.tags
}

resource "aws_elasticache_replication_group" "redis" {
  count                      = var.redis_enabled ? 1 : 0
  replication_group_id       = "${var.name}-hub-quota"
  description                = "Switchyard hub shared quota state"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  port                       = 6379
  subnet_group_name          = aws_elasticache_subnet_group.redis[0].name
  security_group_ids         = [aws_security_group.redis[0].id]
  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  auth_token                 = random_password.redis[0].result
  auth_token_update_strategy = "ROTATE"
  kms_key_id                 = var.kms_key_arn
  snapshot_retention_limit   = 1
  auto_minor_version_upgrade = true
  tags                       = local.tags
}
