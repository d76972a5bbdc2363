# ---------------------------------------------------------------------------------------------
# Identity and container

variable "name" {
  description = "Name prefix for the hub's resources (e.g. switchyard)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name must start with a letter and hold 1-20 lowercase letters, digits or dashes."
  }
}

variable "account_id" {
  description = "12-digit id of the hub account. Checked against the provider's credentials."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be a 12-digit AWS account id."
  }
}

variable "image" {
  description = "Hub container image (deploy/docker/Dockerfile.hub), ideally pinned by digest."
  type        = string

  validation {
    condition     = length(var.image) > 0 && !can(regex(":latest$", var.image))
    error_message = "image must be set and must not use the mutable :latest tag."
  }
}

variable "config_toml" {
  description = "The hub's TOML config (tenants with API-key SHA-256 hashes, aliases, [[providers]] pools). Stored in a Secrets Manager secret because it holds the key hashes, injected as SWITCHYARD_CONFIG_TOML and written to a file by the image's entrypoint. Must listen on 0.0.0.0:<container_port>."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("(?m)^\\s*listen\\s*=", var.config_toml))
    error_message = "config_toml must set `listen` (the hub's default 127.0.0.1:8080 is unreachable from the load balancer)."
  }
}

variable "container_port" {
  description = "Port the hub listens on (plain HTTP behind the ALB, which terminates TLS)."
  type        = number
  default     = 8080

  validation {
    condition     = var.container_port >= 1024 && var.container_port <= 65535
    error_message = "container_port must be 1024-65535 (the container runs as a non-root user)."
  }
}

variable "cpu" {
  description = "Fargate task CPU units."
  type        = number
  default     = 1024

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.cpu)
    error_message = "cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "memory" {
  description = "Fargate task memory in MiB; must be a valid combination with cpu."
  type        = number
  default     = 2048

  validation {
    condition     = var.memory >= 512 && var.memory <= 122880
    error_message = "memory must be between 512 and 122880 MiB."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the image: X86_64 or ARM64."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "environment" {
  description = "Extra plain environment variables (e.g. RUST_LOG). Never secrets."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.environment) : !can(regex("(?i)(key|secret|token|password)", k))])
    error_message = "environment must not carry secret-looking variables (KEY/SECRET/TOKEN/PASSWORD)."
  }
}

variable "otlp_endpoint" {
  description = "OTLP endpoint for traces and metrics (e.g. http://otel-collector.internal:4317), passed as OTEL_EXPORTER_OTLP_ENDPOINT. Null = not set. The binaries read it once the telemetry issue lands; until then it is ignored."
  type        = string
  default     = null

  validation {
    condition     = var.otlp_endpoint == null || can(regex("^https?://", var.otlp_endpoint))
    error_message = "otlp_endpoint must be an http:// or https:// URL."
  }
}

variable "drain_timeout_seconds" {
  description = "The config's drain_timeout in seconds. Make it at least as long as your longest stream; the container's stopTimeout is this plus 15 s (Fargate caps it at 120 s)."
  type        = number
  default     = 60

  validation {
    condition     = var.drain_timeout_seconds >= 1 && var.drain_timeout_seconds <= 105
    error_message = "drain_timeout_seconds must be 1-105."
  }
}

# ---------------------------------------------------------------------------------------------
# Scaling

variable "desired_count" {
  description = "Tasks at creation; afterwards auto-scaling owns the count."
  type        = number
  default     = 3

  validation {
    condition     = var.desired_count >= 1
    error_message = "desired_count must be at least 1."
  }
}

variable "min_capacity" {
  description = "Fewest hub tasks."
  type        = number
  default     = 3

  validation {
    condition     = var.min_capacity >= 1
    error_message = "min_capacity must be at least 1."
  }
}

variable "max_capacity" {
  description = "Most hub tasks."
  type        = number
  default     = 50

  validation {
    condition     = var.max_capacity >= 1 && var.max_capacity <= 1000
    error_message = "max_capacity must be 1-1000."
  }
}

variable "cpu_target_percent" {
  description = "Target average CPU utilisation (ECSServiceAverageCPUUtilization)."
  type        = number
  default     = 70

  validation {
    condition     = var.cpu_target_percent >= 10 && var.cpu_target_percent <= 90
    error_message = "cpu_target_percent must be 10-90."
  }
}

variable "requests_per_target_per_minute" {
  description = "Target of the ALBRequestCountPerTarget policy (requests per task per minute). Placeholder until docs/benchmarks.md gives measured per-task capacity."
  type        = number
  default     = 3000

  validation {
    condition     = var.requests_per_target_per_minute > 0
    error_message = "requests_per_target_per_minute must be positive."
  }
}

# ---------------------------------------------------------------------------------------------
# Network and entry point

variable "vpc_id" {
  description = "Hub VPC."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123abcd."
  }
}

variable "private_subnet_ids" {
  description = "Subnets for the hub tasks (and Redis), one per AZ. They need a route to the spoke CIDRs through the Transit Gateway."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "private_subnet_ids must list at least two subnets (two AZs)."
  }
}

variable "alb_subnet_ids" {
  description = "Subnets for the load balancer: public subnets for an internet-facing ALB, private ones for an internal ALB."
  type        = list(string)

  validation {
    condition     = length(var.alb_subnet_ids) >= 2
    error_message = "alb_subnet_ids must list at least two subnets (an ALB spans two AZs or more)."
  }
}

variable "internal" {
  description = "Make the ALB internal (clients inside the network) instead of internet-facing."
  type        = bool
  default     = false
}

variable "ingress_cidrs" {
  description = "Client CIDRs allowed to reach the ALB on 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.ingress_cidrs) >= 1 && alltrue([for c in var.ingress_cidrs : can(cidrnetmask(c))])
    error_message = "ingress_cidrs must list IPv4 CIDRs."
  }
}

variable "spoke_cidrs" {
  description = "CIDRs of the spoke VPCs (reached through the Transit Gateway); the hub tasks may open connections to spoke_port there."
  type        = list(string)

  validation {
    condition     = length(var.spoke_cidrs) >= 1 && alltrue([for c in var.spoke_cidrs : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "spoke_cidrs must list IPv4 CIDRs, and not 0.0.0.0/0."
  }
}

variable "spoke_port" {
  description = "Port of the spokes' NLB listeners."
  type        = number
  default     = 50051

  validation {
    condition     = var.spoke_port >= 1 && var.spoke_port <= 65535
    error_message = "spoke_port must be 1-65535."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener. Null = request one for domain_name, validated by DNS in public_zone_id."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/", var.certificate_arn))
    error_message = "certificate_arn must be null or an ACM certificate ARN."
  }
}

variable "domain_name" {
  description = "Client-facing name of the hub (api.example.com). With public_zone_id, an alias record to the ALB is created (and the certificate, when certificate_arn is null)."
  type        = string
  default     = null
}

variable "public_zone_id" {
  description = "Route 53 hosted zone of domain_name, in the hub account. Null = manage DNS and the certificate yourself."
  type        = string
  default     = null
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "idle_timeout_seconds" {
  description = "ALB idle timeout: the longest silence allowed on a connection. Must exceed the longest time to first token of a streamed answer."
  type        = number
  default     = 300

  validation {
    condition     = var.idle_timeout_seconds >= 60 && var.idle_timeout_seconds <= 4000
    error_message = "idle_timeout_seconds must be 60-4000."
  }
}

variable "deregistration_delay_seconds" {
  description = "How long the ALB lets in-flight requests and SSE streams of a deregistered task finish before ECS sends it SIGTERM. Set it to the hub's request_timeout or more."
  type        = number
  default     = 90

  validation {
    condition     = var.deregistration_delay_seconds >= 0 && var.deregistration_delay_seconds <= 3600
    error_message = "deregistration_delay_seconds must be 0-3600."
  }
}

variable "deletion_protection" {
  description = "Enable deletion protection on the ALB."
  type        = bool
  default     = true
}

variable "access_logs_bucket" {
  description = "S3 bucket for ALB access logs (bucket policy must allow the ELB log delivery). Null = no access logs."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------------
# WAF

variable "waf_rate_limit" {
  description = "WAF rate-based rule: requests one client IP may make per evaluation window before it is blocked (a coarse flood guard; tenant quotas are the hub's job)."
  type        = number
  default     = 3000

  validation {
    condition     = var.waf_rate_limit >= 10 && var.waf_rate_limit <= 2000000000
    error_message = "waf_rate_limit must be 10-2000000000."
  }
}

variable "waf_rate_window_seconds" {
  description = "Evaluation window of the rate-based rule."
  type        = number
  default     = 300

  validation {
    condition     = contains([60, 120, 300, 600], var.waf_rate_window_seconds)
    error_message = "waf_rate_window_seconds must be 60, 120, 300 or 600."
  }
}

# ---------------------------------------------------------------------------------------------
# Optional Redis for shared quotas

variable "redis_enabled" {
  description = "Create an ElastiCache Redis replication group for quota state shared by hub replicas. The hub's Redis settings arrive with the quota issue; until then the module only provisions it and outputs its endpoint and auth secret."
  type        = bool
  default     = false
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"

  validation {
    condition     = can(regex("^cache\\.", var.redis_node_type))
    error_message = "redis_node_type must be an ElastiCache node type (cache.*)."
  }
}

# ---------------------------------------------------------------------------------------------
# Logs, keys, tags

variable "log_retention_days" {
  description = "Retention of the hub and WAF log groups, in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, ..., 365, ..., 3653)."
  }
}

variable "kms_key_arn" {
  description = "Optional KMS key ARN for log groups, the config secret and Redis. Null = AWS-managed encryption."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
