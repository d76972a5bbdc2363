output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "cidr" {
  description = "CIDR of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "private_subnet_ids" {
  description = "Private subnet IDs, one per AZ, in the order of var.azs."
  value       = aws_subnet.private[*].id
}

output "private_subnet_cidrs" {
  description = "Private subnet CIDRs, in the order of private_subnet_ids."
  value       = aws_subnet.private[*].cidr_block
}

output "public_subnet_ids" {
  description = "Public subnet IDs (empty when public_subnets = false)."
  value       = aws_subnet.public[*].id
}

output "private_route_table_ids" {
  description = "Route table IDs of the private subnets (Transit Gateway routes are added to these)."
  value       = aws_route_table.private[*].id
}
