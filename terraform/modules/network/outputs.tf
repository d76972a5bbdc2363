output "transit_gateway_id" {
  description = "ID of the Transit Gateway (pass to every spoke module). Available once the TGW is shared, so spoke attachments wait for the share."
  value       = aws_ec2_transit_gateway.this.id
  depends_on  = [aws_ram_resource_association.tgw, aws_ram_principal_association.spokes]
}

output "ram_resource_share_arn" {
  description = "ARN of the RAM share holding the Transit Gateway (spoke accounts outside the organization accept it)."
  value       = aws_ram_resource_share.tgw.arn
  depends_on  = [aws_ram_resource_association.tgw, aws_ram_principal_association.spokes]
}

output "hub_attachment_id" {
  description = "ID of the hub VPC's Transit Gateway attachment."
  value       = aws_ec2_transit_gateway_vpc_attachment.hub.id
}

output "spoke_zone_id" {
  description = "ID of the private hosted zone for the provider pools."
  value       = aws_route53_zone.spokes.zone_id
}

output "spoke_zone_name" {
  description = "Name of the private hosted zone for the provider pools."
  value       = aws_route53_zone.spokes.name
}
