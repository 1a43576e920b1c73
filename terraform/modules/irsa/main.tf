# IAM roles for service accounts: one role per Kubernetes service account, trusted only by that account
# through the cluster's OIDC provider; MSK access scoped to fleetstream topics and groups, Secrets Manager
# read scoped to the environment's secrets. No shared credentials, no wildcards on actions.
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.80, < 7.0" }
  }
}

variable "name" { type = string }
variable "oidc_provider_arn" { type = string }
variable "oidc_issuer" { type = string }
variable "namespace" { type = string }
variable "service_account" { type = string }
variable "msk_cluster_arn" { type = string }
variable "secret_arns" { type = list(string) }
variable "kms_key_arn" { type = string }
variable "tags" {
  type    = map(string)
  default = {}
}

locals {
  issuer = replace(var.oidc_issuer, "https://", "")
  # arn:aws:kafka:region:account:cluster/name/uuid → topic/group ARNs of the same cluster
  msk_parts = split("/", var.msk_cluster_arn)
  msk_base  = replace(local.msk_parts[0], ":cluster", "")
  topics    = "${local.msk_base}:topic/${local.msk_parts[1]}/${local.msk_parts[2]}/fleetstream.*"
  groups    = "${local.msk_base}:group/${local.msk_parts[1]}/${local.msk_parts[2]}/fleetstream-*"
  faust     = "${local.msk_base}:topic/${local.msk_parts[1]}/${local.msk_parts[2]}/fleetstream-streams-*"
}

data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${var.service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "workloads" {
  statement {
    sid       = "MskConnect"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
    resources = [var.msk_cluster_arn]
  }
  statement {
    sid = "MskTopics"
    actions = [
      "kafka-cluster:DescribeTopic", "kafka-cluster:ReadData", "kafka-cluster:WriteData",
      "kafka-cluster:WriteDataIdempotently", "kafka-cluster:CreateTopic", "kafka-cluster:DescribeTopicDynamicConfiguration",
    ]
    resources = [local.topics, local.faust]
  }
  statement {
    sid       = "MskGroups"
    actions   = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]
    resources = [local.groups]
  }
  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = var.secret_arns
  }
  statement {
    sid       = "Decrypt"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  assume_role_policy = data.aws_iam_policy_document.trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "this" {
  name   = "fleetstream-workloads"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.workloads.json
}

output "role_arn" { value = aws_iam_role.this.arn }
