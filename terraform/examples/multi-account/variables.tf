variable "deployment_name" {
  description = "Name of this deployment: prefix of the hub's resources and the ECR repositories."
  type        = string
  default     = "switchyard"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.deployment_name))
    error_message = "deployment_name must be 1-20 lowercase letters, digits or dashes."
  }
}

variable "region" {
  description = "AWS region of every account's resources (the spokes may still call Bedrock in other regions: see models[].regions)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1."
  }
}

variable "azs" {
  description = "Three availability zones of var.region used by every VPC."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b", "us-east-1c"]

  validation {
    condition     = length(var.azs) >= 2 && length(var.azs) <= 4
    error_message = "azs must list 2 to 4 availability zones."
  }
}

variable "hub_account_id" {
  description = "12-digit id of the hub account (hub service, Transit Gateway, private zone, ECR)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.hub_account_id))
    error_message = "hub_account_id must be a 12-digit AWS account id."
  }
}

variable "spoke_a_account_id" {
  description = "12-digit id of the first spoke account."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.spoke_a_account_id))
    error_message = "spoke_a_account_id must be a 12-digit AWS account id."
  }
}

variable "spoke_b_account_id" {
  description = "12-digit id of the second spoke account."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.spoke_b_account_id))
    error_message = "spoke_b_account_id must be a 12-digit AWS account id."
  }
}

variable "deploy_role_name" {
  description = "Name of the role Terraform assumes in every account (same name in each; see README, 'Roles')."
  type        = string
  default     = "SwitchyardDeploy"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.deploy_role_name))
    error_message = "deploy_role_name must be a valid IAM role name."
  }
}

variable "deploy_role_external_id" {
  description = "External id required by the deploy roles' trust policy, if any."
  type        = string
  default     = null
}

variable "accept_ram_share" {
  description = "Spoke accounts accept the Transit Gateway's RAM share explicitly. Leave false when all accounts are in one AWS Organization with RAM sharing enabled; set true otherwise."
  type        = bool
  default     = false
}

variable "image_tag" {
  description = "Tag of the hub and spoke images pushed to the ECR repositories this example creates (e.g. the git commit). Tags are immutable."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid image tag and not \"latest\"."
  }
}

variable "hub_vpc_cidr" {
  description = "CIDR of the hub VPC."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.hub_vpc_cidr))
    error_message = "hub_vpc_cidr must be an IPv4 CIDR."
  }
}

variable "spoke_supernet_cidr" {
  description = "Supernet holding every spoke VPC: the hub routes it to the Transit Gateway once, so a new spoke needs no hub-side change."
  type        = string
  default     = "10.128.0.0/9"

  validation {
    condition     = can(cidrnetmask(var.spoke_supernet_cidr))
    error_message = "spoke_supernet_cidr must be an IPv4 CIDR."
  }
}

variable "spoke_a_cidr" {
  description = "CIDR of spoke A's VPC (inside spoke_supernet_cidr)."
  type        = string
  default     = "10.128.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.spoke_a_cidr))
    error_message = "spoke_a_cidr must be an IPv4 CIDR."
  }
}

variable "spoke_b_cidr" {
  description = "CIDR of spoke B's VPC (inside spoke_supernet_cidr)."
  type        = string
  default     = "10.129.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.spoke_b_cidr))
    error_message = "spoke_b_cidr must be an IPv4 CIDR."
  }
}

variable "models" {
  description = "Bedrock models every spoke serves: hub-facing id, Bedrock model id (or inference profile id), region chain, and the account's quota per (region, model). Enable access to these models in every spoke account first."
  type = list(object({
    id                  = string
    upstream_id         = string
    regions             = list(string)
    context_window      = optional(number, 200000)
    requests_per_minute = number
    tokens_per_minute   = number
  }))
  default = [
    {
      id                  = "claude-haiku"
      upstream_id         = "anthropic.claude-3-haiku-20240307-v1:0"
      regions             = ["us-east-1", "us-west-2"]
      requests_per_minute = 400
      tokens_per_minute   = 300000
    },
  ]

  validation {
    condition     = length(var.models) >= 1 && alltrue([for m in var.models : length(m.regions) >= 1 && m.requests_per_minute > 0 && m.tokens_per_minute > 0])
    error_message = "models needs at least one model, each with at least one region and positive quotas."
  }
}

variable "api_key_sha256" {
  description = "SHA-256 (hex) of each client API key of the example's single tenant: printf %s \"$KEY\" | sha256sum. The keys themselves never reach Terraform."
  type        = list(string)
  sensitive   = true

  validation {
    condition     = length(var.api_key_sha256) >= 1 && alltrue([for h in var.api_key_sha256 : can(regex("^[0-9a-fA-F]{64}$", h))])
    error_message = "api_key_sha256 must list 64-hex-digit SHA-256 hashes."
  }
}

variable "domain_name" {
  description = "Client-facing name of the hub (api.example.com), in public_zone_id. Null = use the ALB's DNS name with certificate_arn."
  type        = string
  default     = null
}

variable "public_zone_id" {
  description = "Public Route 53 zone of domain_name in the hub account (certificate validation and the alias record)."
  type        = string
  default     = null
}

variable "certificate_arn" {
  description = "Existing ACM certificate for the hub's HTTPS listener. Null = request one for domain_name."
  type        = string
  default     = null
}

variable "ingress_cidrs" {
  description = "Client CIDRs allowed to reach the hub on 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.ingress_cidrs : can(cidrnetmask(c))])
    error_message = "ingress_cidrs must be IPv4 CIDRs."
  }
}

variable "redis_enabled" {
  description = "Provision ElastiCache Redis for shared quotas (used by the hub once the quota issue lands)."
  type        = bool
  default     = false
}

variable "otlp_endpoint" {
  description = "OTLP collector endpoint for the hub (ignored by today's binaries)."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Deletion protection on the load balancers. Set false before `terraform destroy`."
  type        = bool
  default     = true
}
