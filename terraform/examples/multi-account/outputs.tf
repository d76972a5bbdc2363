output "hub_url" {
  description = "Base URL of the gateway; OpenAI clients use <hub_url>/v1."
  value       = module.hub.url
}

output "ecr_repositories" {
  description = "Repositories to push the images to (tag = var.image_tag)."
  value       = { for k, r in aws_ecr_repository.this : k => r.repository_url }
}

output "bedrock_pool" {
  description = "DNS names of the bedrock pool: the weighted name and the SRV name the hubs resolve."
  value = {
    weighted = module.bedrock_pool.fqdn
    srv      = module.bedrock_pool.srv_name
  }
}

output "spokes" {
  description = "Per spoke: account, NLB static IPs, ECS cluster/service, log group, target group."
  value = {
    for s in local.bedrock_spokes : s.pool_member.name => {
      account_id       = s.account_id
      nlb_ips          = s.nlb_ips
      cluster          = s.cluster_name
      service          = s.service_name
      log_group        = s.log_group_name
      target_group_arn = s.target_group_arn
    }
  }
}

output "hub" {
  description = "Hub ECS cluster/service, log group, target group and config secret."
  value = {
    cluster           = module.hub.cluster_name
    service           = module.hub.service_name
    log_group         = module.hub.log_group_name
    target_group_arn  = module.hub.target_group_arn
    config_secret_arn = module.hub.config_secret_arn
    redis_endpoint    = module.hub.redis_endpoint
  }
}
