# fleetstream production on AWS. State: S3 with native locking (use_lockfile, Terraform >= 1.10); the bucket is
# created once by terraform/bootstrap. Sizes: ops/capacity.md. Apply through CI only (.github/workflows/terraform.yml).
terraform {
  required_version = ">= 1.10"
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.80, < 7.0" }
    tls = { source = "hashicorp/tls", version = ">= 4.0" }
  }
  backend "s3" {
    bucket       = "fleetstream-terraform-state"
    key          = "envs/production/terraform.tfstate"
    region       = "eu-west-1"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { project = "fleetstream", env = "production" }
  }
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

module "platform" {
  source             = "../../modules/platform"
  env                = "production"
  cidr               = "10.40.0.0/16"
  azs                = ["${var.region}a", "${var.region}b", "${var.region}c"]
  platform_nodes     = { instance_types = ["m7i.2xlarge"], min = 6, max = 40, desired = 10 }
  clickhouse_nodes   = { instance_types = ["r7i.2xlarge"], min = 8, max = 12, desired = 8 }
  msk                = { broker_count = 3, instance_type = "kafka.m7g.large", volume_size_gb = 4000 }
  rds                = { instance_class = "db.r7g.2xlarge", allocated_storage_gb = 500, multi_az = true }
  log_retention_days = 90
}

output "eks_cluster_name" { value = module.platform.eks_cluster_name }
output "msk_bootstrap_brokers_iam" { value = module.platform.msk_bootstrap_brokers_iam }
output "helm_kafka_values" { value = module.platform.helm_kafka_values } # the chart's kafka: values (adr/0130)
output "schema_registry_url" { value = module.platform.schema_registry_url }
output "workloads_role_arn" { value = module.platform.workloads_role_arn }
