variable "name" {
  description = "Name prefix for the Transit Gateway, its RAM share and the hub attachment."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,27}$", var.name))
    error_message = "name must start with a letter and hold 1-28 lowercase letters, digits or dashes."
  }
}

variable "hub_vpc_id" {
  description = "ID of the hub account's VPC (where the hub tasks run and resolve the spoke pools)."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.hub_vpc_id))
    error_message = "hub_vpc_id must look like vpc-0123abcd."
  }
}

variable "hub_subnet_ids" {
  description = "Hub VPC subnets for the Transit Gateway attachment, one per AZ (usually the private subnets)."
  type        = list(string)

  validation {
    condition     = length(var.hub_subnet_ids) >= 1 && alltrue([for s in var.hub_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "hub_subnet_ids must list at least one subnet id (subnet-...)."
  }
}

variable "hub_route_table_ids" {
  description = "Route tables of the hub subnets; a route to each of spoke_cidrs through the Transit Gateway is added to each."
  type        = list(string)

  validation {
    condition     = alltrue([for r in var.hub_route_table_ids : can(regex("^rtb-[0-9a-f]+$", r))])
    error_message = "hub_route_table_ids must be route table ids (rtb-...)."
  }
}

variable "spoke_cidrs" {
  description = "CIDRs that hold the spoke VPCs, routed from the hub through the Transit Gateway. One supernet (e.g. 10.128.0.0/9) means a new spoke account needs no change here."
  type        = list(string)

  validation {
    condition     = length(var.spoke_cidrs) >= 1 && alltrue([for c in var.spoke_cidrs : can(cidrnetmask(c))])
    error_message = "spoke_cidrs must list at least one IPv4 CIDR."
  }
}

variable "share_principals" {
  description = "Who the Transit Gateway is shared with through AWS RAM: 12-digit account ids of the spoke accounts, or an AWS Organizations organization/OU ARN."
  type        = list(string)

  validation {
    condition = length(var.share_principals) >= 1 && alltrue([
      for p in var.share_principals : can(regex("^[0-9]{12}$", p)) || can(regex("^arn:aws[a-z-]*:organizations::[0-9]{12}:(organization|ou)/", p))
    ])
    error_message = "share_principals must be 12-digit account ids or organizations ARNs."
  }
}

variable "allow_external_principals" {
  description = "Allow sharing with accounts outside this account's AWS Organization (they must then accept the share: spoke module accept_ram_share = true)."
  type        = bool
  default     = false
}

variable "amazon_side_asn" {
  description = "Private ASN of the Transit Gateway."
  type        = number
  default     = 64512

  validation {
    condition     = (var.amazon_side_asn >= 64512 && var.amazon_side_asn <= 65534) || (var.amazon_side_asn >= 4200000000 && var.amazon_side_asn <= 4294967294)
    error_message = "amazon_side_asn must be a private ASN: 64512-65534 or 4200000000-4294967294."
  }
}

variable "spoke_zone_name" {
  description = "Name of the Route 53 private hosted zone that holds the provider pools (bedrock.<zone>, openai.<zone>, ...). Associated with the hub VPC."
  type        = string
  default     = "spokes.internal"

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.spoke_zone_name))
    error_message = "spoke_zone_name must be a lowercase DNS name such as spokes.internal."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
