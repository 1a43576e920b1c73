"""Terraform, from the SRE's point of view: every file parses, is canonically formatted, each environment
has remote state with locking and pins its providers, the AWS resources meet the security baseline
(checkov), IAM is least privilege (no `*` actions; IoT devices confined to their own topics; IRSA roles
trusted by one service account), and data stores are encrypted and private.

Not run here: `terraform init/validate/plan` — they download the AWS provider from the Terraform
registry, which this machine cannot reach (only package registries are reachable)."""

from __future__ import annotations

import json
from pathlib import Path

import hcl2
import pytest

from .tools import ROOT, checkov, run, tool

TF = ROOT / "terraform"
ENVS = ["dev", "staging", "production"]


def _load(path: Path) -> dict:
    with path.open() as fh:
        return _plain(hcl2.load(fh))


def _plain(v):
    """python-hcl2 8 keeps HCL's quotes on strings and block labels and marks blocks; drop both."""
    if isinstance(v, dict):
        return {_plain(k): _plain(x) for k, x in v.items() if k != "__is_block__"}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1]
    return v


def _all_tf() -> list[Path]:
    return sorted(TF.rglob("*.tf"))


def _resources(kind: str) -> list[tuple[Path, str, dict]]:
    out = []
    for f in _all_tf():
        for block in _load(f).get("resource", []):
            for name, body in (block.get(kind) or {}).items():
                out.append((f, name, body))
    return out


def _policies() -> list[tuple[str, dict]]:
    """Every jsonencode({...}) IAM policy and aws_iam_policy_document statement, best effort from HCL."""
    docs = []
    for f in _all_tf():
        data = _load(f)
        for block in data.get("data", []):
            for name, body in (block.get("aws_iam_policy_document") or {}).items():
                docs.append((f"{f.relative_to(ROOT)}:{name}", {"Statement": [
                    {"Action": s.get("actions"), "Resource": s.get("resources")} for s in body.get("statement", [])]}))
    return docs


def test_every_file_parses_and_modules_exist():
    files = _all_tf()
    assert len(files) >= 12
    for f in files:
        _load(f)  # raises on a syntax error
    modules = {p.name for p in (TF / "modules").iterdir() if p.is_dir()}
    assert modules >= {"network", "eks", "msk", "rds", "iot_core", "secrets", "observability", "irsa", "clickhouse",
                       "platform"}
    for f in files:
        for block in _load(f).get("module", []):
            for name, body in block.items():
                assert (f.parent / body["source"]).resolve().is_dir(), f"{f}: module {name} source missing"


def test_a_syntax_error_is_caught(tmp_path):
    bad = tmp_path / "bad.tf"
    bad.write_text('resource "aws_s3_bucket" "x" {\n  bucket = \n}\n')
    from lark.exceptions import LarkError

    with pytest.raises(LarkError):
        _load(bad)


@pytest.mark.parametrize("env", ENVS)
def test_each_env_has_locked_remote_state_and_pinned_providers(env):
    main = _load(TF / "envs" / env / "main.tf")
    tf = main["terraform"][0]
    backend = tf["backend"][0]["s3"]
    assert backend["encrypt"] is True and backend["use_lockfile"] is True, "state must be encrypted and locked"
    assert backend["key"] == f"envs/{env}/terraform.tfstate"
    assert ">= 1.10" in tf["required_version"]  # S3 native locking
    aws = tf["required_providers"][0]["aws"]
    assert aws["source"] == "hashicorp/aws" and "<" in aws["version"], "provider major version must be bounded"


def test_production_is_sized_for_availability():
    body = _load(TF / "envs" / "production" / "main.tf")["module"][0]["platform"]
    assert body["rds"]["multi_az"] is True
    assert body["msk"]["broker_count"] % 3 == 0 and body["msk"]["broker_count"] >= 3  # one per AZ
    assert body["platform_nodes"]["min"] >= 3


def test_msk_outputs_the_charts_kafka_values_for_iam():
    """The chart's kafka values come from the cluster Terraform made (adr/0130): IAM on 9098, the region the
    tokens are signed for, RF 3 / min ISR 2 as the cluster's own defaults; every env exposes them."""
    import yaml

    msk = _load(TF / "modules" / "msk" / "main.tf")
    out = next(o["helm_kafka_values"] for o in msk["output"] if "helm_kafka_values" in o)["value"]
    chart = yaml.safe_load((ROOT / "helm" / "fleetstream" / "values.yaml").read_text())["kafka"]
    assert set(out) <= set(chart)
    assert (out["port"], out["securityProtocol"], out["saslMechanism"]) == (9098, "SASL_SSL", "AWS_MSK_IAM")
    props = next(r["aws_msk_configuration"]["this"] for r in msk["resource"] if "aws_msk_configuration" in r)
    server = props["server_properties"]
    assert f"default.replication.factor={out['replicationFactor']}" in str(server)
    assert f"min.insync.replicas={out['minInsyncReplicas']}" in str(server)
    for env in ("dev", "staging", "production"):
        outputs = _load(TF / "envs" / env / "main.tf")["output"]
        assert any("helm_kafka_values" in o for o in outputs), env


def test_data_stores_are_encrypted_private_and_authenticated():
    (_, _, msk), = _resources("aws_msk_cluster")
    auth = msk["client_authentication"][0]
    assert auth["unauthenticated"] is False and auth["sasl"][0]["iam"] is True
    assert msk["encryption_info"][0]["encryption_in_transit"][0]["client_broker"] == "TLS"
    (_, _, db), = _resources("aws_db_instance")
    assert db["storage_encrypted"] is True and db["publicly_accessible"] is False
    assert db["manage_master_user_password"] is True and "password" not in db, "no password in state"
    for _, _name, secret in _resources("aws_secretsmanager_secret"):
        assert "kms_key_id" in secret
    assert not _resources("aws_secretsmanager_secret_version"), "secret values never live in Terraform"


def test_iam_is_least_privilege():
    assert len(_policies()) >= 3
    for where, doc in _policies():
        for st in doc["Statement"]:
            actions = st["Action"] or []
            assert not any(a == "*" or a.endswith(":*") for a in actions if "kms" not in where), (where, actions)
    src = (TF / "modules" / "irsa" / "main.tf").read_text()
    assert "system:serviceaccount:${var.namespace}:${var.service_account}" in src
    assert '"${local.issuer}:aud"' in src


def test_iot_device_policy_confines_a_device_to_its_own_topics():
    src = (TF / "modules" / "iot_core" / "main.tf").read_text()
    for needle in ('thing      = "$${iot:Connection.Thing.ThingName}"',
                   'tenant     = "$${iot:Connection.Thing.Attributes[tenant]}"',
                   '"${local.arn_prefix}:client/${local.thing}"',
                   '"${local.arn_prefix}:topic/fs/${local.tenant}/${local.thing}/*"',
                   '"iot:Connection.Thing.IsAttached" = "true"'):
        assert needle in src, needle
    (_, _, rule), = _resources("aws_iot_topic_rule")
    assert rule["kafka"][0]["client_properties"]["sasl.mechanism"] == "AWS_MSK_IAM"
    assert "error_action" in rule


def test_terraform_fmt_check():
    """`terraform fmt -check` needs the terraform binary; no package registry ships it, so on a machine
    without one this test skips (hcl2 parsing above still runs)."""
    r = run([tool("terraform"), "fmt", "-check", "-recursive", "-diff", str(TF)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_checkov_finds_nothing_in_terraform():
    r = checkov(TF, ROOT / "ops" / "checkov" / "terraform.yaml")
    start = r.stdout.find("{")
    assert start >= 0, f"checkov printed no report (rc {r.returncode}): {r.stderr[-2000:]}"
    report = json.loads(r.stdout[start:])
    report = report[0] if isinstance(report, list) else report
    failed = [f"{c['check_id']} {c['resource']} {c['file_path']}" for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["passed"] > 150
