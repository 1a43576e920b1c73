# fleetstream dev on AWS. State: S3 with native locking (use_lockfile, Terraform >= 1.10); the bucket is
# created once by terraform/bootstrap. Sizes: ops/capacity.md. Apply through CI only (.github/workflows/terraform.yml).
terraform {
  required_version = ">= 1.10"
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.80, < 7.0" }
    tls = { source = "hashicorp/tls", version = ">= 4.0" }
  }
  backend "s3" {
    bucket       = "fleetstream-terraform-state"
    key          = "envs/dev/terraform.tfstate"
    region       = "eu-west-1"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { project = "fleetstream", env = "dev" }
  }
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

module "platform" {
  source             = "../../modules/platform"
  env                = "dev"
  cidr               = "10.20.0.0/16"
  azs                = ["${var.region}a", "${var.region}b", "${var.region}c"]
  platform_nodes     = { instance_types = ["m7i.large"], min = 2, max = 4, desired = 2 }
  clickhouse_nodes   = { instance_types = ["r7i.large"], min = 1, max = 2, desired = 1 }
  msk                = { broker_count = 3, instance_type = "kafka.t3.small", volume_size_gb = 100 }
  rds                = { instance_class = "db.t4g.medium", allocated_storage_gb = 50, multi_az = false }
  log_retention_days = 14
}

output "eks_cluster_name" { value = module.platform.eks_cluster_name }
output "msk_bootstrap_brokers_iam" { value = module.platform.msk_bootstrap_brokers_iam }
output "helm_kafka_values" { value = module.platform.helm_kafka_values } # the chart's kafka: values (adr/0130)
output "schema_registry_url" { value = module.platform.schema_registry_url }
output "workloads_role_arn" { value = module.platform.workloads_role_arn }
