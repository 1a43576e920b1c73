# Self-managed ClickHouse on EKS (adr/0093): the cluster runs on the "clickhouse" node group through the
# Altinity clickhouse-operator (installed with Helm, shards/replicas from ops/capacity.md); Terraform owns
# what outlives the pods: an encrypted, versioned S3 bucket for clickhouse-backup, and the IRSA role that
# may write it.
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.80, < 7.0" }
  }
}

variable "name" { type = string }
variable "kms_key_arn" { type = string }
variable "oidc_provider_arn" { type = string }
variable "oidc_issuer" { type = string }
variable "namespace" {
  type    = string
  default = "clickhouse"
}
variable "tags" {
  type    = map(string)
  default = {}
}

resource "aws_s3_bucket" "backup" {
  #checkov:skip=CKV_AWS_18:backups are written by one IRSA role only; CloudTrail data events cover access
  #checkov:skip=CKV_AWS_144:ClickHouse replicas span three AZs; cross-region copies are a DR decision per env
  #checkov:skip=CKV2_AWS_62:nothing consumes bucket events
  bucket = "${var.name}-clickhouse-backup"
  tags   = var.tags
}

resource "aws_s3_bucket_versioning" "backup" {
  bucket = aws_s3_bucket.backup.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "backup" {
  bucket = aws_s3_bucket.backup.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
  }
}

resource "aws_s3_bucket_public_access_block" "backup" {
  bucket                  = aws_s3_bucket.backup.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "backup" {
  bucket = aws_s3_bucket.backup.id
  rule {
    id     = "expire-old-backups"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    expiration {
      days = 90
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

locals {
  issuer = replace(var.oidc_issuer, "https://", "")
}

resource "aws_iam_role" "backup" {
  name = "${var.name}-clickhouse-backup"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = var.oidc_provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = { StringEquals = { "${local.issuer}:sub" = "system:serviceaccount:${var.namespace}:clickhouse-backup" } }
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "backup" {
  role = aws_iam_role.backup.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Effect = "Allow", Action = ["s3:ListBucket"], Resource = aws_s3_bucket.backup.arn },
      { Effect = "Allow", Action = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], Resource = "${aws_s3_bucket.backup.arn}/*" },
      { Effect = "Allow", Action = ["kms:Decrypt", "kms:GenerateDataKey"], Resource = var.kms_key_arn },
    ]
  })
}

output "backup_bucket" { value = aws_s3_bucket.backup.id }
output "backup_role_arn" { value = aws_iam_role.backup.arn }
