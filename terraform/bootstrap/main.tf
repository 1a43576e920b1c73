# Run once per AWS account, with local state, before any env: the S3 bucket that holds every env's state
# (versioned, KMS-encrypted, public access blocked, TLS-only). Locking uses S3 conditional writes
# (use_lockfile in the envs' backends), so no DynamoDB table is needed.
terraform {
  required_version = ">= 1.10"
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.80, < 7.0" }
  }
}

provider "aws" {
  region = "eu-west-1"
}

resource "aws_kms_key" "state" {
  #checkov:skip=CKV2_AWS_64:the default key policy (account root) is intended for the state key
  description         = "fleetstream Terraform state"
  enable_key_rotation = true
}

resource "aws_s3_bucket" "state" {
  #checkov:skip=CKV_AWS_18:state access is audited by CloudTrail data events; a log bucket would need its own bootstrap
  #checkov:skip=CKV_AWS_144:state is versioned; cross-region replication is a DR choice made per organisation
  #checkov:skip=CKV2_AWS_62:nothing consumes state bucket events
  bucket = "fleetstream-terraform-state"
}

resource "aws_s3_bucket_versioning" "state" {
  bucket = aws_s3_bucket.state.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "state" {
  bucket = aws_s3_bucket.state.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.state.arn
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "state" {
  bucket = aws_s3_bucket.state.id
  rule {
    id     = "old-state-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 365
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_public_access_block" "state" {
  bucket                  = aws_s3_bucket.state.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_policy" "tls_only" {
  bucket = aws_s3_bucket.state.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.state.arn, "${aws_s3_bucket.state.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
}
