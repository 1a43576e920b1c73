# AWS IoT Core as an alternative device edge (adr/0095): devices connect to IoT Core with X.509 certificates
# registered per thing; the policy lets a device touch only fs/<tenant>/<device>/#: the thing name IS the
# device id and the tenant is a thing attribute, so the policy uses the policy variables
# iot:Connection.Thing.ThingName and iot:Connection.Thing.Attributes[tenant]. A topic rule
# forwards telemetry into MSK (fleetstream.telemetry.raw is written by the iot connector; here: a staging topic).
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.80, < 7.0" }
  }
}

variable "name" { type = string }
variable "msk_bootstrap_brokers_iam" { type = string }
variable "vpc_id" { type = string }
variable "subnet_ids" { type = list(string) }
variable "security_group_ids" { type = list(string) }
variable "msk_cluster_arn" { type = string }
variable "kms_key_arn" { type = string }
variable "tags" {
  type    = map(string)
  default = {}
}

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  arn_prefix = "arn:aws:iot:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}"
  tenant     = "$${iot:Connection.Thing.Attributes[tenant]}"
  thing      = "$${iot:Connection.Thing.ThingName}"
}

resource "aws_iot_thing_type" "sensor" {
  name = "${var.name}-sensor"
  properties {
    description           = "fleetstream device; attribute 'tenant' carries its tenant id"
    searchable_attributes = ["tenant"]
  }
  tags = var.tags
}

# Least privilege per device: connect only as its own thing (client id = thing name, certificate attached
# to that thing), publish/subscribe/receive only within fs/<its tenant>/<itself>/.
resource "aws_iot_policy" "device" {
  name = "${var.name}-device"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect    = "Allow"
        Action    = "iot:Connect"
        Resource  = "${local.arn_prefix}:client/${local.thing}"
        Condition = { Bool = { "iot:Connection.Thing.IsAttached" = "true" } }
      },
      {
        Effect   = "Allow"
        Action   = ["iot:Publish", "iot:Receive"]
        Resource = "${local.arn_prefix}:topic/fs/${local.tenant}/${local.thing}/*"
      },
      {
        Effect   = "Allow"
        Action   = "iot:Subscribe"
        Resource = "${local.arn_prefix}:topicfilter/fs/${local.tenant}/${local.thing}/*"
      },
    ]
  })
  tags = var.tags
}

# Certificates: devices keep their keys; the platform signs CSRs with its own CA (adr/0003) and registers
# each certificate with aws_iot_certificate{certificate_pem} + aws_iot_thing_principal_attachment at
# provisioning time (the gateway's IoT adapter, not Terraform). The platform CA is registered once:
variable "platform_ca_pem" {
  description = "PEM of the platform root CA (public certificate only); empty = not registered yet"
  type        = string
  default     = ""
}

resource "aws_iot_ca_certificate" "platform" {
  count                   = var.platform_ca_pem == "" ? 0 : 1
  active                  = true
  allow_auto_registration = false
  ca_certificate_pem      = var.platform_ca_pem
  certificate_mode        = "SNI_ONLY"
  tags                    = var.tags
}

resource "aws_iam_role" "rule" {
  name = "${var.name}-iot-rule"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "iot.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "rule" {
  # The VPC rule destination creates ENIs; those EC2 actions support no resource-level scoping.
  #checkov:skip=CKV_AWS_290:EC2 ENI actions of a VPC destination cannot be scoped
  #checkov:skip=CKV_AWS_289:EC2 ENI actions of a VPC destination cannot be scoped
  #checkov:skip=CKV_AWS_355:EC2 ENI actions of a VPC destination cannot be scoped
  role = aws_iam_role.rule.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface", "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeVpcAttribute", "ec2:DescribeSecurityGroups"]
        Resource = "*"
      },
      {
        Effect   = "Allow"
        Action   = ["kafka-cluster:Connect", "kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
        Resource = [var.msk_cluster_arn, "${replace(var.msk_cluster_arn, ":cluster/", ":topic/")}/fleetstream.iot.ingress"]
      },
    ]
  })
}

resource "aws_iot_topic_rule_destination" "msk" {
  vpc_configuration {
    role_arn        = aws_iam_role.rule.arn
    vpc_id          = var.vpc_id
    subnet_ids      = var.subnet_ids
    security_groups = var.security_group_ids
  }
}

# Telemetry → MSK. Key = tenant:device (adr/0002) so each device stays ordered; the iot connector
# normalises fleetstream.iot.ingress into fleetstream.telemetry.raw like any other protocol.
resource "aws_iot_topic_rule" "telemetry_to_msk" {
  name        = replace("${var.name}_telemetry_to_msk", "-", "_")
  enabled     = true
  sql         = "SELECT *, topic(2) AS tenant_id, topic(3) AS device_id, timestamp() AS received_ms FROM 'fs/+/+/telemetry'"
  sql_version = "2016-03-23"

  kafka {
    destination_arn = aws_iot_topic_rule_destination.msk.arn
    topic           = "fleetstream.iot.ingress"
    key             = "$${topic(2)}:$${topic(3)}"
    client_properties = {
      "bootstrap.servers" = var.msk_bootstrap_brokers_iam
      "security.protocol" = "SASL_SSL"
      "sasl.mechanism"    = "AWS_MSK_IAM"
      "acks"              = "all"
    }
  }

  error_action {
    cloudwatch_logs {
      log_group_name = aws_cloudwatch_log_group.rule_errors.name
      role_arn       = aws_iam_role.rule_errors.arn
    }
  }
  tags = var.tags
}

resource "aws_cloudwatch_log_group" "rule_errors" {
  name              = "/fleetstream/${var.name}/iot-rule-errors"
  retention_in_days = 365
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_iam_role" "rule_errors" {
  name = "${var.name}-iot-rule-errors"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "iot.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "rule_errors" {
  role = aws_iam_role.rule_errors.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["logs:CreateLogStream", "logs:PutLogEvents"], Resource = "${aws_cloudwatch_log_group.rule_errors.arn}:*" }]
  })
}

output "device_policy_name" { value = aws_iot_policy.device.name }
output "thing_type" { value = aws_iot_thing_type.sensor.name }
