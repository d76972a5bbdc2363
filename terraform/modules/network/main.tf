# Network of the hub account: the Transit Gateway that joins the hub VPC to every spoke VPC,
# shared with the spoke accounts through AWS RAM, the hub VPC's attachment and routes, and the
# private hosted zone that holds the provider pools.
#
# Spoke attachments are made by each spoke (modules/spoke) in its own account. The TGW accepts
# them automatically and uses its default route table: every attachment propagates there. Spokes
# still cannot reach one another: a spoke VPC only routes the hub CIDRs to the TGW, and the spoke
# security groups only admit the hub CIDRs.

resource "aws_ec2_transit_gateway" "this" {
  #checkov:skip=CKV_AWS_331:Auto-accept is what lets a spoke account attach itself in one apply. Only the accounts named in share_principals (RAM) can see this TGW at all, and a spoke VPC reaches nothing but the hub CIDRs (its own routes and security groups).
  description                     = "Switchyard hub <-> spokes (${var.name})"
  amazon_side_asn                 = var.amazon_side_asn
  auto_accept_shared_attachments  = "enable"
  default_route_table_association = "enable"
  default_route_table_propagation = "enable"
  dns_support                     = "enable"
  vpn_ecmp_support                = "disable"
  tags                            = merge(var.tags, { Name = var.name })
}

resource "aws_ram_resource_share" "tgw" {
  name                      = "${var.name}-tgw"
  allow_external_principals = var.allow_external_principals
  tags                      = var.tags
}

resource "aws_ram_resource_association" "tgw" {
  resource_arn       = aws_ec2_transit_gateway.this.arn
  resource_share_arn = aws_ram_resource_share.tgw.arn
}

resource "aws_ram_principal_association" "spokes" {
  for_each           = toset(var.share_principals)
  principal          = each.value
  resource_share_arn = aws_ram_resource_share.tgw.arn
}

resource "aws_ec2_transit_gateway_vpc_attachment" "hub" {
  transit_gateway_id = aws_ec2_transit_gateway.this.id
  vpc_id             = var.hub_vpc_id
  subnet_ids         = var.hub_subnet_ids
  dns_support        = "enable"
  tags               = merge(var.tags, { Name = "${var.name}-hub" })
}

locals {
  # Keyed by position, not by route table id: the ids are often unknown until apply.
  hub_routes = {
    for pair in setproduct(range(length(var.hub_route_table_ids)), var.spoke_cidrs) : "${pair[0]}|${pair[1]}" => {
      route_table_id = var.hub_route_table_ids[pair[0]]
      cidr           = pair[1]
    }
  }
}

resource "aws_route" "hub_to_spokes" {
  for_each               = local.hub_routes
  route_table_id         = each.value.route_table_id
  destination_cidr_block = each.value.cidr
  transit_gateway_id     = aws_ec2_transit_gateway.this.id
  depends_on             = [aws_ec2_transit_gateway_vpc_attachment.hub]
}

# Private zone for the provider pools (modules/provider_pool writes the records). Only the hub VPC
# resolves it: spokes never look each other up.
resource "aws_route53_zone" "spokes" {
  name    = var.spoke_zone_name
  comment = "Switchyard provider pools (${var.name})"

  vpc {
    vpc_id = var.hub_vpc_id
  }

  tags = var.tags
}
