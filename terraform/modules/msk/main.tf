# Amazon MSK: IAM authentication only, TLS in transit (client-broker and in-cluster), KMS at rest,
# replication factor 3 / min ISR 2 (adr/0001), broker logs to CloudWatch, enhanced monitoring per partition.
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.80, < 7.0" }
  }
}

variable "name" { type = string }
variable "kafka_version" {
  type    = string
  default = "3.8.x"
}
variable "broker_count" { type = number }
variable "instance_type" { type = string }
variable "volume_size_gb" { type = number }
variable "subnet_ids" { type = list(string) }
variable "vpc_id" { type = string }
variable "client_security_group_ids" { type = list(string) }
variable "kms_key_arn" { type = string }
variable "log_retention_days" {
  type    = number
  default = 365
}
variable "tags" {
  type    = map(string)
  default = {}
}

resource "aws_security_group" "msk" {
  name        = "${var.name}-msk"
  description = "MSK brokers: IAM/TLS port from the EKS nodes only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "iam_tls" {
  for_each                     = toset(var.client_security_group_ids)
  security_group_id            = aws_security_group.msk.id
  referenced_security_group_id = each.value
  from_port                    = 9098
  to_port                      = 9098
  ip_protocol                  = "tcp"
  description                  = "Kafka clients, SASL/IAM over TLS"
}

resource "aws_msk_configuration" "this" {
  name           = "${var.name}-config"
  kafka_versions = [var.kafka_version]
  server_properties = join("\n", [
    "auto.create.topics.enable=false",
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "unclean.leader.election.enable=false",
    "num.partitions=12",
    "log.retention.hours=168",
  ])
}

resource "aws_cloudwatch_log_group" "broker" {
  name              = "/fleetstream/${var.name}/msk"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.broker_count
  enhanced_monitoring    = "PER_TOPIC_PER_PARTITION"

  broker_node_group_info {
    instance_type   = var.instance_type
    client_subnets  = var.subnet_ids
    security_groups = [aws_security_group.msk.id]
    storage_info {
      ebs_storage_info {
        volume_size = var.volume_size_gb
      }
    }
    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  client_authentication {
    unauthenticated = false
    sasl {
      iam   = true
      scram = false
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = var.kms_key_arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.broker.name
      }
    }
  }

  tags = var.tags
}

output "cluster_arn" { value = aws_msk_cluster.this.arn }
output "cluster_name" { value = aws_msk_cluster.this.cluster_name }
output "bootstrap_brokers_iam" { value = aws_msk_cluster.this.bootstrap_brokers_sasl_iam }

# The fleetstream chart's kafka values for this cluster (adr/0130, adr/0131): IAM over TLS on 9098, tokens
# signed for the cluster's region by the pods' IRSA role; RF and min ISR as the cluster's defaults.
data "aws_region" "current" {}

output "helm_kafka_values" {
  value = {
    bootstrap         = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
    port              = 9098
    securityProtocol  = "SASL_SSL"
    saslMechanism     = "AWS_MSK_IAM"
    awsRegion         = data.aws_region.current.name
    replicationFactor = 3
    minInsyncReplicas = 2
  }
}
output "security_group_id" { value = aws_security_group.msk.id }
