# Switchyard across three accounts: a hub account and two Bedrock spoke accounts.
#
#   hub account:    VPC, Transit Gateway (shared by RAM), private zone spokes.internal,
#                   bedrock provider pool records, ECR repositories, hub service (ALB + WAF)
#   spoke accounts: VPC attached to the TGW, spoke service behind an NLB with static IPs,
#                   Route 53 health check on the NLB's healthy-target alarm
#
# Adding a spoke account (see ../../README.md, "Adding a third spoke"): one provider block in
# providers.tf, one module block like module.spoke_b, and its name in local.bedrock_spokes.

locals {
  name       = var.deployment_name
  spoke_port = 50051
  # Must equal the drain_timeout written into each config (the templates use these values).
  spoke_drain_timeout_seconds = 30
  # Spoke connection age; the spoke module sets the NLB deregistration delay above 1.1 × it.
  spoke_max_connection_age_seconds = 30
  hub_drain_timeout_seconds        = 60

  tags = {
    "switchyard:deployment" = var.deployment_name
    "managed-by"            = "terraform"
  }

  hub_image   = "${aws_ecr_repository.this["hub"].repository_url}:${var.image_tag}"
  spoke_image = "${aws_ecr_repository.this["spoke"].repository_url}:${var.image_tag}"

  spoke_template  = "${path.module}/templates/spoke-bedrock.toml.tftpl"
  bedrock_regions = distinct(flatten([for m in var.models : m.regions]))

  # IAM resources for bedrock:InvokeModel*: the foundation model in each region of its chain, or
  # for an inference profile (us./eu./apac./global. prefix) the profile in each region plus the
  # underlying model in any region the profile routes to. ACCOUNT_ID is filled in per spoke.
  bedrock_model_arns = distinct(flatten([
    for m in var.models : (
      can(regex("^(us|eu|apac|global)\\.", m.upstream_id))
      ? concat(
        [for r in m.regions : "arn:aws:bedrock:${r}:ACCOUNT_ID:inference-profile/${m.upstream_id}"],
        ["arn:aws:bedrock:*::foundation-model/${join(".", slice(split(".", m.upstream_id), 1, length(split(".", m.upstream_id))))}"],
      )
      : [for r in m.regions : "arn:aws:bedrock:${r}::foundation-model/${m.upstream_id}"]
    )
  ]))

  # Request count for the spokes' second scaling policy: Bedrock invocations of the configured
  # models in the home region (calls that failed over to another region are not counted here).
  bedrock_request_metrics = [
    for m in var.models : {
      namespace   = "AWS/Bedrock"
      metric_name = "Invocations"
      dimensions  = { ModelId = m.upstream_id }
      stat        = "Sum"
    }
  ]

  # Every spoke of the bedrock pool. A new spoke module goes into this list.
  bedrock_spokes = [module.spoke_a, module.spoke_b]
}

# ---------------------------------------------------------------------------------------------
# Hub account: network, registry

module "hub_vpc" {
  source    = "../../modules/vpc"
  providers = { aws = aws.hub }

  name = "${local.name}-hub"
  cidr = var.hub_vpc_cidr
  azs  = var.azs
  tags = local.tags
}

module "network" {
  source    = "../../modules/network"
  providers = { aws = aws.hub }

  name                      = local.name
  hub_vpc_id                = module.hub_vpc.vpc_id
  hub_subnet_ids            = module.hub_vpc.private_subnet_ids
  hub_route_table_ids       = module.hub_vpc.private_route_table_ids
  spoke_cidrs               = [var.spoke_supernet_cidr]
  share_principals          = [for s in local.bedrock_spokes : s.account_id]
  allow_external_principals = var.accept_ram_share
  spoke_zone_name           = "spokes.internal"
  tags                      = local.tags
}

resource "aws_ecr_repository" "this" {
  #checkov:skip=CKV_AWS_136:Images are encrypted at rest with the AWS-managed KMS key (encryption_type = KMS); a customer-managed key would also need a key policy for every spoke account.
  for_each             = toset(["hub", "spoke"])
  provider             = aws.hub
  name                 = "${local.name}/${each.key}"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
  }
}

# Spoke accounts pull the spoke image from the hub account's registry.
data "aws_iam_policy_document" "spoke_pull" {
  provider = aws.hub

  statement {
    sid     = "SpokeAccountsPull"
    actions = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    principals {
      type        = "AWS"
      identifiers = [for s in local.bedrock_spokes : "arn:aws:iam::${s.account_id}:root"]
    }
  }
}

resource "aws_ecr_repository_policy" "spoke_pull" {
  provider   = aws.hub
  repository = aws_ecr_repository.this["spoke"].name
  policy     = data.aws_iam_policy_document.spoke_pull.json
}

resource "aws_ecr_lifecycle_policy" "this" {
  for_each   = aws_ecr_repository.this
  provider   = aws.hub
  repository = each.value.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 50 most recent images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 50 }
      action       = { type = "expire" }
    }]
  })
}

# ---------------------------------------------------------------------------------------------
# Spoke accounts: one module block per account

module "spoke_a" {
  source    = "../../modules/spoke"
  providers = { aws = aws.spoke_a }

  name          = "bedrock-a"
  account_id    = var.spoke_a_account_id
  provider_name = "bedrock"
  image         = local.spoke_image
  config_toml = templatefile(local.spoke_template, {
    account_id                 = var.spoke_a_account_id
    port                       = local.spoke_port
    drain_timeout_seconds      = local.spoke_drain_timeout_seconds
    max_connection_age_seconds = local.spoke_max_connection_age_seconds
    regions                    = local.bedrock_regions
    models                     = var.models
  })
  port                       = local.spoke_port
  drain_timeout_seconds      = local.spoke_drain_timeout_seconds
  max_connection_age_seconds = local.spoke_max_connection_age_seconds
  bedrock_model_arns         = [for a in local.bedrock_model_arns : replace(a, "ACCOUNT_ID", var.spoke_a_account_id)]
  request_metrics            = local.bedrock_request_metrics
  vpc_cidr                   = var.spoke_a_cidr
  azs                        = var.azs
  hub_cidrs                  = [var.hub_vpc_cidr]
  transit_gateway_id         = module.network.transit_gateway_id
  ram_resource_share_arn     = module.network.ram_resource_share_arn
  accept_ram_share           = var.accept_ram_share
  dns_weight                 = 100
  deletion_protection        = var.deletion_protection
  tags                       = local.tags
}

module "spoke_b" {
  source    = "../../modules/spoke"
  providers = { aws = aws.spoke_b }

  name          = "bedrock-b"
  account_id    = var.spoke_b_account_id
  provider_name = "bedrock"
  image         = local.spoke_image
  config_toml = templatefile(local.spoke_template, {
    account_id                 = var.spoke_b_account_id
    port                       = local.spoke_port
    drain_timeout_seconds      = local.spoke_drain_timeout_seconds
    max_connection_age_seconds = local.spoke_max_connection_age_seconds
    regions                    = local.bedrock_regions
    models                     = var.models
  })
  port                       = local.spoke_port
  drain_timeout_seconds      = local.spoke_drain_timeout_seconds
  max_connection_age_seconds = local.spoke_max_connection_age_seconds
  bedrock_model_arns         = [for a in local.bedrock_model_arns : replace(a, "ACCOUNT_ID", var.spoke_b_account_id)]
  request_metrics            = local.bedrock_request_metrics
  vpc_cidr                   = var.spoke_b_cidr
  azs                        = var.azs
  hub_cidrs                  = [var.hub_vpc_cidr]
  transit_gateway_id         = module.network.transit_gateway_id
  ram_resource_share_arn     = module.network.ram_resource_share_arn
  accept_ram_share           = var.accept_ram_share
  dns_weight                 = 100
  deletion_protection        = var.deletion_protection
  tags                       = local.tags
}

# ---------------------------------------------------------------------------------------------
# Hub account: the bedrock pool's DNS records, then the hub

module "bedrock_pool" {
  source    = "../../modules/provider_pool"
  providers = { aws = aws.hub }

  name      = "bedrock"
  zone_id   = module.network.spoke_zone_id
  zone_name = module.network.spoke_zone_name
  ttl       = 10
  port                       = local.spoke_port
  members                    = [
    for s in local.bedrock_spokes : {
      name            = s.pool_member.name
      ips             = s.pool_member.ips
      weight          = s.pool_member.weight
      health_check_id = s.pool_member.health_check_id
    }
  ]
}

module "hub" {
  source                     = "../../modules/hub"
  providers                  = { aws = aws.hub }

  name                       = local.name
  account_id                 = var.hub_account_id
  image                      = local.hub_image
  config_toml                = templatefile("${path.module}/templates/hub.toml.tftpl", {
    drain_timeout_seconds = local.hub_drain_timeout_seconds
    api_key_sha256        = var.api_key_sha256
    models                = var.models
    providers_toml        = module.bedrock_pool.hub_provider_toml
  })
  drain_timeout_seconds      = local.hub_drain_timeout_seconds
  vpc_id                     = module.hub_vpc.vpc_id
  private_subnet_ids         = module.hub_vpc.private_subnet_ids
  alb_subnet_ids             = module.hub_vpc.public_subnet_ids
  ingress_cidrs              = var.ingress_cidrs
  spoke_cidrs                = [var.spoke_supernet_cidr]
  spoke_port                 = local.spoke_port
  domain_name                = var.domain_name
  public_zone_id             = var.public_zone_id
  certificate_arn            = var.certificate_arn
  redis_enabled              = var.redis_enabled
  otlp_endpoint              = var.otlp_endpoint
  deletion_protection        = var.deletion_protection
  tags                       = local.tags
}
