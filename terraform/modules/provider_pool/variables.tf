variable "name" {
  description = "Pool name = the hub's [[providers]] name and the first label of the pool's DNS name (bedrock -> bedrock.<zone>)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.name))
    error_message = "name must be 1-32 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "zone_id" {
  description = "Route 53 private hosted zone that holds the pool (network module output spoke_zone_id)."
  type        = string

  validation {
    condition     = can(regex("^Z[A-Z0-9]+$", var.zone_id))
    error_message = "zone_id must be a Route 53 hosted zone id (Z...)."
  }
}

variable "zone_name" {
  description = "Name of that zone (network module output spoke_zone_name), e.g. spokes.internal."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}\\.?$", var.zone_name))
    error_message = "zone_name must be a lowercase DNS name such as spokes.internal."
  }
}

variable "ttl" {
  description = "TTL of the pool's records in seconds. 10 s lets hubs see a drained or failed spoke within seconds; lower values only add query load."
  type        = number
  default     = 10

  validation {
    condition     = var.ttl >= 1 && var.ttl <= 60 && floor(var.ttl) == var.ttl
    error_message = "ttl must be an integer between 1 and 60 seconds: the hubs re-resolve at the TTL and a long TTL delays failover."
  }
}

variable "port" {
  description = "Port every spoke of the pool listens on (SRV records carry it; the hub's dns_port for A lookups)."
  type        = number
  default     = 50051

  validation {
    condition     = var.port >= 1 && var.port <= 65535
    error_message = "port must be 1-65535."
  }
}

variable "members" {
  description = "The pool's spokes (spoke module output pool_member): name, NLB static IPs, weight 0-255 (0 = drained) and the Route 53 health check id."
  type = list(object({
    name            = string
    ips             = list(string)
    weight          = number
    health_check_id = string
  }))

  validation {
    condition     = length(var.members) >= 1
    error_message = "members must hold at least one spoke."
  }

  validation {
    condition     = alltrue([for m in var.members : m.weight >= 0 && m.weight <= 255 && floor(m.weight) == m.weight])
    error_message = "Every member weight must be an integer 0-255 (the Route 53 weighted-routing range)."
  }

  validation {
    condition     = length(distinct([for m in var.members : m.name])) == length(var.members)
    error_message = "Member names must be unique: they are the records' set identifiers."
  }

  validation {
    condition     = alltrue([for m in var.members : can(regex("^[a-z][a-z0-9-]{0,19}$", m.name))])
    error_message = "Member names must be 1-20 lowercase letters, digits or dashes (they become DNS labels)."
  }

  validation {
    condition     = alltrue([for m in var.members : length(m.ips) >= 1 && alltrue([for ip in m.ips : can(cidrhost("${ip}/32", 0))])])
    error_message = "Every member needs at least one IPv4 address."
  }
}

variable "connections_per_address" {
  description = "HTTP/2 connections each hub keeps to each spoke NLB address (the hub's providers[].connections). The NLB places connections, not calls, on tasks: keep hubs × NLB IPs × this at least 4 × the largest task count of a spoke service (docs/operations.md, Balancing across spoke tasks)."
  type        = number
  default     = 4

  validation {
    condition     = var.connections_per_address >= 1 && var.connections_per_address <= 64
    error_message = "connections_per_address must be 1-64 (the hub's limit)."
  }
}
