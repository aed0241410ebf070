terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.x: the arguments used here (ESM filter criteria, metrics config, HTTP API access
      # logs) are stable across the 5 series; 6.x renamed several, so stay below it.
      version = "~> 5.40"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(var.extra_tags, {
      Project     = var.project_name
      Environment = var.environment
    })
  }
}
