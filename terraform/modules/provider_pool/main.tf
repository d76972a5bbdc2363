# One provider pool in the private zone, e.g. for name = "bedrock", zone spokes.internal:
#
#   bedrock.spokes.internal              A    weighted, one record set per spoke (its NLB IPs),
#                                             each with the spoke's Route 53 health check, TTL 10
#   <spoke>.bedrock.spokes.internal      A    the spoke's NLB IPs (simple), TTL 10
#   _grpc._tcp.bedrock.spokes.internal   SRV  every spoke with weight > 0: "10 <weight> <port>
#                                             <spoke>.bedrock.spokes.internal", TTL 10
#
# The weighted A name is the reference topology: a resolver gets one spoke per answer, chosen by
# weight among the healthy ones. The SRV name lists all spokes in one answer with their weights;
# the example's hubs use it (dns_record = "srv", output hub_provider_toml): one query gives the
# whole pool and its exact weights. Hubs can resolve the weighted name too (dns_record =
# "weighted", output hub_provider_toml_weighted), learning the pool over many answers (see
# terraform/README.md, "How hubs discover spokes").

locals {
  fqdn     = "${var.name}.${trimsuffix(var.zone_name, ".")}"
  srv_name = "_grpc._tcp.${local.fqdn}"
  members  = { for m in var.members : m.name => m }
  active   = [for m in var.members : m if m.weight > 0]
}

resource "aws_route53_record" "weighted" {
  for_each        = local.members
  zone_id         = var.zone_id
  name            = local.fqdn
  type            = "A"
  ttl             = var.ttl
  records         = each.value.ips
  set_identifier  = each.key
  health_check_id = each.value.health_check_id

  weighted_routing_policy {
    weight = each.value.weight
  }
}

resource "aws_route53_record" "member" {
  for_each = local.members
  zone_id  = var.zone_id
  name     = "${each.key}.${local.fqdn}"
  type     = "A"
  ttl      = var.ttl
  records  = each.value.ips
}

resource "aws_route53_record" "srv" {
  count   = length(local.active) > 0 ? 1 : 0
  zone_id = var.zone_id
  name    = local.srv_name
  type    = "SRV"
  ttl     = var.ttl
  records = [for m in local.active : "10 ${m.weight} ${var.port} ${m.name}.${local.fqdn}"]

  depends_on = [aws_route53_record.member]
}
