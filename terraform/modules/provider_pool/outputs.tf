output "fqdn" {
  description = "The pool's weighted name (bedrock.spokes.internal)."
  value       = local.fqdn
}

output "srv_name" {
  description = "The pool's SRV name that hubs resolve (_grpc._tcp.bedrock.spokes.internal)."
  value       = local.srv_name
}

output "hub_provider_toml" {
  description = "The hub's [[providers]] block for this pool (paste into or template into the hub config)."
  value       = <<-EOT
    [[providers]]
    name = "${var.name}"
    dns = "${local.srv_name}"
    dns_record = "srv"
    dns_max_ttl = "${var.ttl}s"
    health = { interval = "5s", timeout = "2s", healthy_threshold = 2, unhealthy_threshold = 2 }
    connections = ${var.connections_per_address}
  EOT
}

output "hub_provider_toml_weighted" {
  description = "The hub's [[providers]] block resolving the weighted name instead (dns_record = \"weighted\": the hub learns the pool from many one-spoke answers). hub_provider_toml (SRV) stays the example's default: see terraform/README.md."
  value       = <<-EOT
    [[providers]]
    name = "${var.name}"
    dns = "${local.fqdn}"
    dns_record = "weighted"
    dns_port = ${var.port}
    dns_max_ttl = "${var.ttl}s"
    health = { interval = "5s", timeout = "2s", healthy_threshold = 2, unhealthy_threshold = 2 }
  EOT
}
