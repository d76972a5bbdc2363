variable "name" {
  description = "Name prefix for every resource of this VPC (lowercase letters, digits and dashes)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,27}$", var.name))
    error_message = "name must start with a letter and hold 1-28 lowercase letters, digits or dashes."
  }
}

variable "cidr" {
  description = "IPv4 CIDR of the VPC (a /16 to /24). Must not overlap the other Switchyard VPCs: they are joined by a Transit Gateway."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.cidr)) && tonumber(split("/", var.cidr)[1]) >= 16 && tonumber(split("/", var.cidr)[1]) <= 24
    error_message = "cidr must be an IPv4 CIDR between /16 and /24, e.g. 10.128.0.0/16."
  }
}

variable "azs" {
  description = "Availability zones to spread the subnets over (2 to 4). One private and one public subnet is made in each."
  type        = list(string)

  validation {
    condition     = length(var.azs) >= 2 && length(var.azs) <= 4
    error_message = "azs must list 2 to 4 availability zones."
  }
}

variable "public_subnets" {
  description = "Whether to create public subnets, an internet gateway and NAT. Needed for an internet-facing ALB and for egress to public APIs (Bedrock, ECR, third-party model APIs) without VPC endpoints."
  type        = bool
  default     = true
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (cheaper) instead of one per AZ (survives an AZ loss)."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow log group, in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, ..., 365, ..., 3653)."
  }
}

variable "kms_key_arn" {
  description = "Optional KMS key ARN for the flow log group. Null = CloudWatch Logs' default encryption."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
