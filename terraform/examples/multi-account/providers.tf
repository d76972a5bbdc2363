# One provider per account, each assuming the deploy role of its account from the credentials
# you run Terraform with. allowed_account_ids stops a mis-typed id before anything is created.

provider "aws" {
  alias               = "hub"
  region              = var.region
  allowed_account_ids = [var.hub_account_id]

  assume_role {
    role_arn     = "arn:aws:iam::${var.hub_account_id}:role/${var.deploy_role_name}"
    session_name = "switchyard-terraform"
    external_id  = var.deploy_role_external_id
  }

  default_tags {
    tags = local.tags
  }
}

provider "aws" {
  alias               = "spoke_a"
  region              = var.region
  allowed_account_ids = [var.spoke_a_account_id]

  assume_role {
    role_arn     = "arn:aws:iam::${var.spoke_a_account_id}:role/${var.deploy_role_name}"
    session_name = "switchyard-terraform"
    external_id  = var.deploy_role_external_id
  }

  default_tags {
    tags = local.tags
  }
}

provider "aws" {
  alias               = "spoke_b"
  region              = var.region
  allowed_account_ids = [var.spoke_b_account_id]

  assume_role {
    role_arn     = "arn:aws:iam::${var.spoke_b_account_id}:role/${var.deploy_role_name}"
    session_name = "switchyard-terraform"
    external_id  = var.deploy_role_external_id
  }

  default_tags {
    tags = local.tags
  }
}
