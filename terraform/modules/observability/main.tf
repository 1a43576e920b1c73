# CloudWatch: application log groups (container logs shipped by Fluent Bit), metric alarms on the managed
# services (MSK, RDS) to an SNS topic, and one dashboard. Application SLO alerts live in Prometheus
# (ops/alerts); these cover what Prometheus cannot see when the cluster itself is in trouble.
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.80, < 7.0" }
  }
}

variable "name" { type = string }
variable "kms_key_arn" { type = string }
variable "msk_cluster_name" { type = string }
variable "msk_broker_count" { type = number }
variable "rds_instance_id" { type = string }
variable "log_retention_days" {
  type    = number
  default = 30
}
variable "tags" {
  type    = map(string)
  default = {}
}

locals {
  roles = ["gateway", "streams", "sink", "connector-mqtt"]
}

resource "aws_cloudwatch_log_group" "app" {
  for_each          = toset(local.roles)
  name              = "/fleetstream/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_cloudwatch_metric_alarm" "msk_disk" {
  count               = var.msk_broker_count
  alarm_name          = "${var.name}-msk-broker-${count.index + 1}-disk"
  alarm_description   = "MSK broker data disk above 80 % (runbook: ops/runbooks/ingest-budget-burn-fast.md)"
  namespace           = "AWS/Kafka"
  metric_name         = "KafkaDataLogsDiskUsed"
  dimensions          = { "Cluster Name" = var.msk_cluster_name, "Broker ID" = tostring(count.index + 1) }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = 80
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "msk_offline_partitions" {
  alarm_name          = "${var.name}-msk-offline-partitions"
  alarm_description   = "MSK has offline partitions: producers fail (runbook: ops/runbooks/ingest-budget-burn-fast.md)"
  namespace           = "AWS/Kafka"
  metric_name         = "OfflinePartitionsCount"
  dimensions          = { "Cluster Name" = var.msk_cluster_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "rds_cpu" {
  alarm_name          = "${var.name}-rds-cpu"
  alarm_description   = "Control-plane PostgreSQL CPU above 80 % (runbook: ops/runbooks/gateway-errors.md)"
  namespace           = "AWS/RDS"
  metric_name         = "CPUUtilization"
  dimensions          = { DBInstanceIdentifier = var.rds_instance_id }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 3
  threshold           = 80
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "rds_storage" {
  alarm_name          = "${var.name}-rds-free-storage"
  alarm_description   = "Control-plane PostgreSQL below 10 GiB free (runbook: ops/runbooks/gateway-errors.md)"
  namespace           = "AWS/RDS"
  metric_name         = "FreeStorageSpace"
  dimensions          = { DBInstanceIdentifier = var.rds_instance_id }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 2
  threshold           = 10737418240
  comparison_operator = "LessThanThreshold"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = "${var.name}-overview"
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title   = "MSK bytes in per broker"
          region  = data.aws_region.current.name
          metrics = [for i in range(var.msk_broker_count) : ["AWS/Kafka", "BytesInPerSec", "Cluster Name", var.msk_cluster_name, "Broker ID", tostring(i + 1)]]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title   = "RDS CPU and connections"
          region  = data.aws_region.current.name
          metrics = [["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier", var.rds_instance_id], ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", var.rds_instance_id]]
        }
      },
    ]
  })
}

data "aws_region" "current" {}

output "alarm_topic_arn" { value = aws_sns_topic.alarms.arn }
output "log_group_names" { value = { for k, g in aws_cloudwatch_log_group.app : k => g.name } }
