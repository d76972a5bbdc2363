terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5"
    }
  }

  # Keep state remote and locked in a real deployment, e.g. (in the hub account):
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "switchyard/multi-account.tfstate"
  #   region       = "us-east-1"
  #   use_lockfile = true
  # }
}
