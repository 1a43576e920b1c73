"""YAML hygiene, from the SRE's point of view: the files people edit under pressure (values, workflows,
Compose, alert rules, EMQX values, checkov settings) have no duplicate keys, bad indentation or syntax
errors that a YAML parser would silently accept or reject at deploy time (yamllint, ops/yamllint.yaml)."""

from __future__ import annotations

from yamllint import linter
from yamllint.config import YamlLintConfig

from .tools import ROOT

FILES = [
    "docker-compose.yml", "helm/fleetstream/Chart.yaml", "helm/fleetstream/values.yaml",
    "helm/fleetstream/values-production.yaml", "helm/fleetstream/files/emqx-values.yaml",
    "helm/fleetstream/files/fleetstream-rules.yaml", "ops/alerts/fleetstream-rules.yaml",
    "ops/checkov/kubernetes.yaml", "ops/checkov/terraform.yaml",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / ".github" / "workflows").glob("*.yml")),
]
CONF = YamlLintConfig(file=str(ROOT / "ops" / "yamllint.yaml"))


def _errors(text: str) -> list[str]:
    return [f"{p.line}:{p.column} {p.message}" for p in linter.run(text, CONF) if p.level == "error"]


def test_deployment_yaml_is_clean():
    problems = {f: _errors((ROOT / f).read_text()) for f in FILES}
    assert {f: e for f, e in problems.items() if e} == {}


def test_yamllint_catches_a_duplicate_key():
    assert any("duplication" in e for e in _errors("a: 1\nb: 2\na: 3\n"))
