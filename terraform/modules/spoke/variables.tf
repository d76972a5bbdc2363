# ---------------------------------------------------------------------------------------------
# Identity

variable "name" {
  description = "Short name of this spoke, unique across all spokes (e.g. bedrock-a). Used in resource names, the DNS set identifier and the per-spoke record <name>.<pool>.<zone>."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name must start with a letter and hold 1-20 lowercase letters, digits or dashes (load balancer names are limited to 32 characters)."
  }
}

variable "account_id" {
  description = "12-digit id of the AWS account this spoke is deployed into. Checked against the provider's credentials so that a mis-wired provider alias fails the plan instead of deploying into the wrong account."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be a 12-digit AWS account id."
  }
}

variable "provider_name" {
  description = "Provider pool this spoke belongs to (the hub's [[providers]] name, e.g. bedrock). Informational: tags and outputs."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.provider_name))
    error_message = "provider_name must be 1-32 lowercase letters, digits or dashes."
  }
}

# ---------------------------------------------------------------------------------------------
# Container

variable "image" {
  description = "Spoke container image (built from deploy/docker/Dockerfile.spoke), ideally pinned by digest: 123456789012.dkr.ecr.us-east-1.amazonaws.com/switchyard-spoke@sha256:..."
  type        = string

  validation {
    condition     = length(var.image) > 0 && !can(regex(":latest$", var.image))
    error_message = "image must be set and must not use the mutable :latest tag."
  }
}

variable "config_toml" {
  description = "The spoke's TOML config (docs/configuration.md). Passed to the container as SWITCHYARD_CONFIG_TOML and written to a file by the image's entrypoint. Must hold no secrets (API keys come from var.secrets) and must listen on 0.0.0.0:<port>."
  type        = string

  validation {
    condition     = can(regex("(?m)^\\s*listen\\s*=", var.config_toml)) && can(regex("(?m)^\\s*provider\\s*=", var.config_toml))
    error_message = "config_toml must be a spoke config with at least `listen` and `provider` keys."
  }
}

variable "port" {
  description = "Port the spoke listens on for HTTP (/healthz, /inference) and gRPC alike; also the NLB listener port. The hub's dns_port defaults to 50051."
  type        = number
  default     = 50051

  validation {
    condition     = var.port >= 1024 && var.port <= 65535 && floor(var.port) == var.port
    error_message = "port must be an integer between 1024 and 65535 (the container runs as a non-root user)."
  }
}

variable "cpu" {
  description = "Fargate task CPU units (256 = 0.25 vCPU)."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.cpu)
    error_message = "cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "memory" {
  description = "Fargate task memory in MiB; must be a valid combination with cpu."
  type        = number
  default     = 1024

  validation {
    condition     = var.memory >= 512 && var.memory <= 122880
    error_message = "memory must be between 512 and 122880 MiB."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the image: X86_64 or ARM64 (Graviton, cheaper; build the image for linux/arm64)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "environment" {
  description = "Extra plain environment variables for the container (e.g. RUST_LOG). Never put secrets here: use var.secrets."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.environment) : !can(regex("(?i)(key|secret|token|password)", k))])
    error_message = "environment must not carry secret-looking variables (KEY/SECRET/TOKEN/PASSWORD); inject them with var.secrets."
  }
}

variable "secrets" {
  description = "Environment variables injected by ECS from Secrets Manager at task start: variable name => secret ARN (optionally with a :json-key:: suffix). Use for [openai] api_key_env. Only the task execution role may read them, and only these secrets."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for arn in values(var.secrets) : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:", arn))])
    error_message = "secrets values must be Secrets Manager secret ARNs."
  }
}

variable "runtime_secret_arns" {
  description = "Secrets the spoke process itself may read at run time (secretsmanager:GetSecretValue on exactly these ARNs, for Secrets Manager references in the spoke config once supported). Empty = no Secrets Manager access for the task role."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.runtime_secret_arns : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:", arn))])
    error_message = "runtime_secret_arns must be Secrets Manager secret ARNs."
  }
}

variable "bedrock_model_arns" {
  description = "Bedrock resources the task role may invoke (bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream, which also cover Converse and ConverseStream): foundation-model ARNs in every region of the config's region chains, plus inference-profile ARNs when upstream_id is a profile. Empty for non-Bedrock spokes."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.bedrock_model_arns : can(regex("^arn:aws[a-z-]*:bedrock:[a-z0-9*-]+:[0-9]{0,12}:(foundation-model|inference-profile|application-inference-profile|provisioned-model)/", arn))])
    error_message = "bedrock_model_arns must be Bedrock foundation-model, inference-profile or provisioned-model ARNs (the region may be * for the models behind a cross-region profile)."
  }
}

variable "assume_role_arns" {
  description = "Roles the task may assume with STS (the config's [bedrock] role_arn). Empty = no sts:AssumeRole."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.assume_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/", arn))])
    error_message = "assume_role_arns must be IAM role ARNs."
  }
}

variable "drain_timeout_seconds" {
  description = "The config's drain_timeout in seconds (default 30). The container's stopTimeout is this plus 15 s, so ECS never SIGKILLs a spoke that is still finishing streams."
  type        = number
  default     = 30

  validation {
    condition     = var.drain_timeout_seconds >= 1 && var.drain_timeout_seconds <= 105
    error_message = "drain_timeout_seconds must be 1-105 (Fargate caps stopTimeout at 120 s)."
  }
}

# ---------------------------------------------------------------------------------------------
# Scaling

variable "desired_count" {
  description = "Tasks at creation; afterwards Application Auto Scaling owns the count."
  type        = number
  default     = 3

  validation {
    condition     = var.desired_count >= 1
    error_message = "desired_count must be at least 1."
  }
}

variable "min_capacity" {
  description = "Fewest tasks auto-scaling keeps (3 = one per AZ in a three-AZ region)."
  type        = number
  default     = 3

  validation {
    condition     = var.min_capacity >= 1
    error_message = "min_capacity must be at least 1."
  }
}

variable "max_capacity" {
  description = "Most tasks auto-scaling may run."
  type        = number
  default     = 50

  validation {
    condition     = var.max_capacity >= 1 && var.max_capacity <= 1000
    error_message = "max_capacity must be 1-1000."
  }
}

variable "cpu_target_percent" {
  description = "Target average CPU utilisation of the service (target tracking on ECSServiceAverageCPUUtilization)."
  type        = number
  default     = 60

  validation {
    condition     = var.cpu_target_percent >= 10 && var.cpu_target_percent <= 90
    error_message = "cpu_target_percent must be 10-90."
  }
}

variable "request_metrics" {
  description = "CloudWatch metrics whose sum is this spoke's request count per minute (e.g. AWS/Bedrock Invocations per ModelId). When non-empty, a second target-tracking policy keeps (sum of these) / RunningTaskCount at requests_per_task_per_minute. An NLB has no per-target request count, see README."
  type = list(object({
    namespace   = string
    metric_name = string
    dimensions  = map(string)
    stat        = optional(string, "Sum")
  }))
  default = []

  validation {
    condition     = length(var.request_metrics) <= 9 && alltrue([for m in var.request_metrics : contains(["Sum", "Average", "Maximum", "SampleCount"], m.stat)])
    error_message = "request_metrics may hold up to 9 metrics, each with stat Sum, Average, Maximum or SampleCount."
  }
}

variable "requests_per_task_per_minute" {
  description = "Target of the request-count policy: requests per task per minute. Derive it from the capacity-planning rule in docs/operations.md."
  type        = number
  default     = 600

  validation {
    condition     = var.requests_per_task_per_minute > 0
    error_message = "requests_per_task_per_minute must be positive."
  }
}

# ---------------------------------------------------------------------------------------------
# Network

variable "vpc_id" {
  description = "Existing VPC to deploy into. Null = create one with modules/vpc from vpc_cidr and azs."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be null or look like vpc-0123abcd."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC to create when vpc_id is null. Must fall inside the network module's spoke_cidrs and not overlap any other VPC."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_cidr == null || can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be null or an IPv4 CIDR."
  }
}

variable "azs" {
  description = "Availability zones for the created VPC (when vpc_id is null), 2 to 4."
  type        = list(string)
  default     = []
}

variable "subnet_ids" {
  description = "Private subnets for the tasks and the Transit Gateway attachment, one per AZ (existing VPC only)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must be subnet ids (subnet-...)."
  }
}

variable "route_table_ids" {
  description = "Route tables of subnet_ids; a route to each hub CIDR through the Transit Gateway is added (existing VPC only)."
  type        = list(string)
  default     = []
}

variable "nlb_subnet_mappings" {
  description = "Static private IPs of the NLB, one per AZ (existing VPC only). Null/empty with a created VPC = host number nlb_ip_host_number of each private subnet. These IPs are what the pool's DNS records hold."
  type = list(object({
    subnet_id            = string
    private_ipv4_address = string
  }))
  default = []

  validation {
    condition     = alltrue([for m in var.nlb_subnet_mappings : can(cidrhost("${m.private_ipv4_address}/32", 0))])
    error_message = "nlb_subnet_mappings private_ipv4_address values must be IPv4 addresses."
  }
}

variable "nlb_ip_host_number" {
  description = "With a created VPC: the host number inside each private subnet used as the NLB's static IP (10 = x.y.z.10)."
  type        = number
  default     = 10

  validation {
    condition     = var.nlb_ip_host_number >= 4 && var.nlb_ip_host_number <= 250
    error_message = "nlb_ip_host_number must be 4-250 (AWS reserves the first four addresses)."
  }
}

variable "hub_cidrs" {
  description = "CIDRs the hubs call from (the hub VPC). Only these reach the NLB port, and only these are routed to the Transit Gateway."
  type        = list(string)

  validation {
    condition     = length(var.hub_cidrs) >= 1 && alltrue([for c in var.hub_cidrs : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "hub_cidrs must list at least one IPv4 CIDR, and not 0.0.0.0/0."
  }
}

variable "upstream_egress" {
  description = "Extra egress rules for upstreams not on 443 (e.g. an on-prem vLLM at 10.50.0.0/16:8000). HTTPS egress to anywhere is always allowed (Bedrock, STS, ECR, CloudWatch Logs, third-party APIs)."
  type = list(object({
    cidr = string
    port = number
  }))
  default = []

  validation {
    condition     = alltrue([for e in var.upstream_egress : can(cidrnetmask(e.cidr)) && e.port >= 1 && e.port <= 65535])
    error_message = "upstream_egress entries need an IPv4 CIDR and a port 1-65535."
  }
}

variable "transit_gateway_id" {
  description = "Transit Gateway shared from the hub account (network module output)."
  type        = string

  validation {
    condition     = can(regex("^tgw-[0-9a-f]+$", var.transit_gateway_id))
    error_message = "transit_gateway_id must look like tgw-0123abcd."
  }
}

variable "ram_resource_share_arn" {
  description = "ARN of the RAM share of the Transit Gateway (network module output). Used only when accept_ram_share = true."
  type        = string
  default     = null
}

variable "accept_ram_share" {
  description = "Accept the RAM share from this account. Needed when the spoke account is not in the hub's AWS Organization (or RAM sharing with the organization is off)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Load balancer, health and DNS

variable "health_check_interval_seconds" {
  description = "Interval of the NLB target health check on GET /healthz (200 = can serve; 503 = quota exhausted, all routes down, credentials missing or draining)."
  type        = number
  default     = 10

  validation {
    condition     = var.health_check_interval_seconds >= 5 && var.health_check_interval_seconds <= 300
    error_message = "health_check_interval_seconds must be 5-300."
  }
}

variable "health_check_grace_period_seconds" {
  description = "ECS ignores load-balancer health for replacing tasks this long after a task starts. The default (the maximum) means ECS replaces a task only when it exits: /healthz is a readiness signal (503 while out of quota) and must not make ECS kill healthy processes. See README, 'Readiness is not liveness'."
  type        = number
  default     = 2147483647

  validation {
    condition     = var.health_check_grace_period_seconds >= 0 && var.health_check_grace_period_seconds <= 2147483647
    error_message = "health_check_grace_period_seconds must be 0-2147483647."
  }
}

variable "deregistration_delay_seconds" {
  description = "How long the NLB keeps sending nothing new to a deregistered task before ECS sends it SIGTERM. Existing connections keep working meanwhile and each ends within 1.1 × max_connection_age_seconds (the hubs reconnect to other tasks), so this must be at least that plus 10 s; the spoke then drains what is left."
  type        = number
  default     = 45

  validation {
    condition     = var.deregistration_delay_seconds >= 0 && var.deregistration_delay_seconds <= 3600
    error_message = "deregistration_delay_seconds must be 0-3600."
  }
}

variable "dns_weight" {
  description = "Weight of this spoke in its provider pool (Route 53 weighted record and SRV weight), 0-255. 0 drains the spoke: no new hub picks it."
  type        = number
  default     = 100

  validation {
    condition     = var.dns_weight >= 0 && var.dns_weight <= 255 && floor(var.dns_weight) == var.dns_weight
    error_message = "dns_weight must be an integer 0-255."
  }
}

variable "deletion_protection" {
  description = "Enable deletion protection on the NLB (turn off before destroying the spoke)."
  type        = bool
  default     = true
}

variable "alarm_actions" {
  description = "SNS topic ARNs notified when targets stay unhealthy (the unhealthy-targets alarm). Empty = no notification."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------------------------
# Logs and tags

variable "log_retention_days" {
  description = "Retention of the spoke's CloudWatch log group, in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, ..., 365, ..., 3653)."
  }
}

variable "kms_key_arn" {
  description = "Optional KMS key ARN for the log groups. Null = CloudWatch Logs' default encryption."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "max_connection_age_seconds" {
  description = "The config's max_connection_age in seconds (the spoke's default is 60). The NLB balances connections, not calls: the spoke ends each hub connection after this long (±10 %) with a graceful GOAWAY, so a task added by auto-scaling gets calls within 1.1 × this, and a deregistered one is left within the same time. Must match the config; deregistration_delay_seconds must be at least 1.1 × this + 10."
  type        = number
  default     = 30

  validation {
    condition     = var.max_connection_age_seconds >= 5 && var.max_connection_age_seconds <= 3600
    error_message = "max_connection_age_seconds must be 5-3600."
  }
}
