# One fleetstream environment on AWS: the composition every env (terraform/envs/*) instantiates with its
# own sizes. Sizes come from ops/capacity.md (computed by ops/capacity.py).
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.80, < 7.0" }
    tls = { source = "hashicorp/tls", version = ">= 4.0" }
  }
}

variable "env" { type = string }
variable "cidr" { type = string }
variable "azs" { type = list(string) }
variable "eks_public_access_cidrs" {
  type    = list(string)
  default = []
}
variable "platform_nodes" {
  type = object({ instance_types = list(string), min = number, max = number, desired = number })
}
variable "clickhouse_nodes" {
  type = object({ instance_types = list(string), min = number, max = number, desired = number })
}
variable "msk" {
  type = object({ broker_count = number, instance_type = string, volume_size_gb = number })
}
variable "rds" {
  type = object({ instance_class = string, allocated_storage_gb = number, multi_az = bool })
}
variable "log_retention_days" {
  type    = number
  default = 30
}
variable "platform_ca_pem" {
  type    = string
  default = ""
}
variable "schema_registry_url" {
  # Any Confluent-compatible registry (adr/0140). Default: Apicurio Registry on this environment's EKS
  # cluster (namespace schema-registry, SQL storage on its RDS PostgreSQL). AWS Glue Schema Registry has no
  # Confluent-compatible API and frames values differently, so it is not a drop-in (adr/0140).
  type    = string
  default = ""
}

locals {
  name                = "fleetstream-${var.env}"
  schema_registry_url = var.schema_registry_url != "" ? var.schema_registry_url : "http://apicurio-registry.schema-registry.svc.cluster.local:8080/apis/ccompat/v7"
  tags                = { project = "fleetstream", env = var.env, managed-by = "terraform" }
}

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "kms" {
  # A key policy's "*" resource means this key only; the account-root statement is AWS's default key policy.
  #checkov:skip=CKV_AWS_109:key policy, resource is the key itself
  #checkov:skip=CKV_AWS_111:key policy, resource is the key itself
  #checkov:skip=CKV_AWS_356:key policy, resource is the key itself
  statement {
    sid       = "AccountAdmin"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${local.name}: data at rest (MSK, RDS, EKS secrets, logs, Secrets Manager, backups)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

module "network" {
  source      = "../network"
  name        = local.name
  cidr        = var.cidr
  azs         = var.azs
  kms_key_arn = aws_kms_key.this.arn
  tags        = local.tags
}

module "eks" {
  source              = "../eks"
  name                = local.name
  subnet_ids          = module.network.private_subnet_ids
  kms_key_arn         = aws_kms_key.this.arn
  public_access_cidrs = var.eks_public_access_cidrs
  node_groups = {
    platform = merge(var.platform_nodes, { labels = { "fleetstream.io/pool" = "platform" }, taints = [] })
    clickhouse = merge(var.clickhouse_nodes, {
      labels = { "fleetstream.io/pool" = "clickhouse" }
      taints = [{ key = "fleetstream.io/clickhouse", value = "true", effect = "NO_SCHEDULE" }]
    })
  }
  tags = local.tags
}

module "msk" {
  source                    = "../msk"
  name                      = local.name
  broker_count              = var.msk.broker_count
  instance_type             = var.msk.instance_type
  volume_size_gb            = var.msk.volume_size_gb
  subnet_ids                = module.network.data_subnet_ids
  vpc_id                    = module.network.vpc_id
  client_security_group_ids = [module.eks.cluster_security_group_id]
  kms_key_arn               = aws_kms_key.this.arn
  tags                      = local.tags
}

module "rds" {
  source                    = "../rds"
  name                      = local.name
  instance_class            = var.rds.instance_class
  allocated_storage_gb      = var.rds.allocated_storage_gb
  multi_az                  = var.rds.multi_az
  subnet_ids                = module.network.data_subnet_ids
  vpc_id                    = module.network.vpc_id
  client_security_group_ids = [module.eks.cluster_security_group_id]
  kms_key_arn               = aws_kms_key.this.arn
  tags                      = local.tags
}

module "secrets" {
  source      = "../secrets"
  name        = local.name
  kms_key_arn = aws_kms_key.this.arn
  tags        = local.tags
}

module "workloads_role" {
  source            = "../irsa"
  name              = "${local.name}-workloads"
  oidc_provider_arn = module.eks.oidc_provider_arn
  oidc_issuer       = module.eks.oidc_issuer
  namespace         = "fleetstream"
  service_account   = "fleetstream"
  msk_cluster_arn   = module.msk.cluster_arn
  secret_arns       = values(module.secrets.arns)
  kms_key_arn       = aws_kms_key.this.arn
  tags              = local.tags
}

module "clickhouse" {
  source            = "../clickhouse"
  name              = local.name
  kms_key_arn       = aws_kms_key.this.arn
  oidc_provider_arn = module.eks.oidc_provider_arn
  oidc_issuer       = module.eks.oidc_issuer
  tags              = local.tags
}

module "iot_core" {
  source                    = "../iot_core"
  name                      = local.name
  msk_bootstrap_brokers_iam = module.msk.bootstrap_brokers_iam
  msk_cluster_arn           = module.msk.cluster_arn
  vpc_id                    = module.network.vpc_id
  subnet_ids                = module.network.data_subnet_ids
  security_group_ids        = [module.eks.cluster_security_group_id]
  kms_key_arn               = aws_kms_key.this.arn
  platform_ca_pem           = var.platform_ca_pem
  tags                      = local.tags
}

module "observability" {
  source             = "../observability"
  name               = local.name
  kms_key_arn        = aws_kms_key.this.arn
  msk_cluster_name   = module.msk.cluster_name
  msk_broker_count   = var.msk.broker_count
  rds_instance_id    = module.rds.instance_id
  log_retention_days = var.log_retention_days
  tags               = local.tags
}

output "eks_cluster_name" { value = module.eks.cluster_name }
output "msk_bootstrap_brokers_iam" { value = module.msk.bootstrap_brokers_iam }
output "helm_kafka_values" { value = module.msk.helm_kafka_values }
output "rds_endpoint" { value = module.rds.endpoint }
output "workloads_role_arn" { value = module.workloads_role.role_arn }
output "data_subnet_cidrs" { value = module.network.data_subnet_cidrs }
output "alarm_topic_arn" { value = module.observability.alarm_topic_arn }
output "schema_registry_url" { value = local.schema_registry_url } # helm: schemaRegistry.url
