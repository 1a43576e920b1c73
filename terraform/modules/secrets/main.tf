# Secrets Manager entries the chart references through External Secrets (helm/fleetstream values):
# values are set out of band (rotation jobs, the platform CA ceremony) and never live in Terraform state.
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.80, < 7.0" }
  }
}

variable "name" { type = string }
variable "kms_key_arn" { type = string }
variable "tags" {
  type    = map(string)
  default = {}
}

locals {
  secrets = {
    postgres   = "owner DSN and application role password (adr/0004)"
    clickhouse = "ClickHouse DSN of the sink and the gateway"
    platform   = "secrets master key sealing tenant CA keys"
    pki        = "platform root CA certificate and the service certificates"
  }
}

resource "aws_secretsmanager_secret" "this" {
  for_each                = local.secrets
  name                    = "${var.name}/${each.key}"
  description             = each.value
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 30
  tags                    = var.tags
}

output "arns" { value = { for k, s in aws_secretsmanager_secret.this : k => s.arn } }
