"""The Helm chart, from an SRE's point of view: what `helm upgrade --install` would apply must be a
production-grade workload — every role limited, probed, non-root, disruption-budgeted, autoscaled on the
right signal, network-isolated, scraped — and must never carry a secret value. Rendered with a real helm
binary (built by scripts/ops-tools.sh), validated against the Kubernetes schemas and checkov."""

from __future__ import annotations

import re

import pytest
import yaml

from runtime.observability import ROLE_PORT_OFFSETS

from .tools import KUBE_VERSION, ROOT, TEST_DIGEST, checkov, run, tool

CHART = ROOT / "helm" / "fleetstream"
SECRET_ENV = re.compile(r"PASSWORD|SECRET|DSN|MASTER_KEY|TOKEN", re.I)


def render(*args: str) -> list[dict]:
    r = run([tool("helm"), "template", "fs", str(CHART), "--namespace", "fleetstream", "--kube-version",
             KUBE_VERSION, *args])
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workload_problems(docs: list[dict]) -> list[str]:
    """fleetstream's own policy for rendered workloads; returns what is wrong (empty: fine)."""
    out = []
    for name, dep in by_kind(docs, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        psc = pod.get("securityContext") or {}
        if not psc.get("runAsNonRoot"):
            out.append(f"{name}: pod may run as root")
        for c in pod["containers"]:
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if not (res.get(kind) or {}).get(r):
                        out.append(f"{name}/{c['name']}: no {kind}.{r}")
            for probe in ("livenessProbe", "readinessProbe"):
                if not c.get(probe):
                    out.append(f"{name}/{c['name']}: no {probe}")
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem"):
                out.append(f"{name}/{c['name']}: privilege escalation or writable root filesystem")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                out.append(f"{name}/{c['name']}: capabilities not dropped")
            if c["image"].endswith(":latest") or ":" not in c["image"].rsplit("/", 1)[-1] and "@" not in c["image"]:
                out.append(f"{name}/{c['name']}: image not pinned ({c['image']})")
            for e in c.get("env") or []:
                if SECRET_ENV.search(e["name"]) and "value" in e:
                    out.append(f"{name}/{c['name']}: secret {e['name']} inlined")
    for name, d in by_kind(docs, "Secret").items():
        if d.get("data") or d.get("stringData"):
            out.append(f"Secret {name} rendered with values")
    return out


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return render()


def test_helm_lint_passes_strict():
    r = run([tool("helm"), "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION])
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_workload_is_limited_probed_nonroot_and_secret_free(docs):
    roles = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in by_kind(docs, "Deployment").values()}
    assert roles == {"gateway", "streams", "sink", "connector-mqtt"}
    assert workload_problems(docs) == []
    assert workload_problems(render("-f", str(CHART / "values-production.yaml"))) == []


def test_the_policy_check_catches_a_broken_chart():
    """The check above can fail: no limits, a probe-less role and an inlined secret are reported."""
    broken = render("--skip-schema-validation", "--set", "gateway.resources.limits=null", "--set", "sink.resources=null")
    dep = by_kind(broken, "Deployment")["fs-streams"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    del c["readinessProbe"]
    c["env"].append({"name": "FLEETSTREAM_POSTGRES_APP_PASSWORD", "value": "hunter2"})
    found = "\n".join(workload_problems(broken))
    assert "fs-gateway/gateway: no limits.cpu" in found
    assert "fs-sink/sink: no requests.memory" in found
    assert "fs-streams/streams: no readinessProbe" in found
    assert "FLEETSTREAM_POSTGRES_APP_PASSWORD inlined" in found


def test_values_schema_refuses_unsafe_values_before_anything_renders():
    """helm itself rejects values without limits, an inlined-looking secret reference, or a latest tag."""
    for bad in (["--set", "gateway.resources.limits=null"], ["--set", "postgres.existingSecret="],
                ["--set", "image.tag=latest"], ["--set", "image.digest=sha256:short"],
                ["--set", "sink.pdb.minAvailable=1"]):  # two PDB fields at once
        r = run([tool("helm"), "template", "fs", str(CHART), "--kube-version", KUBE_VERSION, *bad])
        assert r.returncode != 0 and "schema" in r.stderr.lower(), (bad, r.stderr[-500:])
    import json

    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values, schema)  # the defaults themselves


def test_gateway_probes_use_the_health_routes(docs):
    c = by_kind(docs, "Deployment")["fs-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["args"] == ["run", "gateway"]
    from gateway.api.routes import health

    assert {r.path for r in health.router.routes} >= {"/healthz", "/readyz"}


def test_autoscaling_signal_per_role_and_bounds_within_partitions(docs):
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {"fs-gateway", "fs-streams", "fs-sink", "fs-connector-mqtt"}
    gw = hpas["fs-gateway"]["spec"]["metrics"][0]
    assert gw["type"] == "Resource" and gw["resource"]["name"] == "cpu"
    for role in ("streams", "sink"):
        spec = hpas[f"fs-{role}"]["spec"]
        m = spec["metrics"][0]
        assert m["type"] == "External" and m["external"]["metric"]["name"] == "kafka_consumergroup_lag"
        assert m["external"]["metric"]["selector"]["matchLabels"] == {"consumergroup": values[role]["consumerGroup"]}
        # a consumer group cannot use more members than partitions: more replicas would idle
        assert spec["maxReplicas"] <= values["kafka"]["partitions"]["telemetry"]
        assert spec["minReplicas"] <= spec["maxReplicas"]
    for d in by_kind(docs, "Deployment").values():  # the HPA owns replicas
        assert "replicas" not in d["spec"]


def test_each_role_has_a_pdb_and_the_network_is_default_deny(docs):
    pdbs = by_kind(docs, "PodDisruptionBudget")
    for name, dep in by_kind(docs, "Deployment").items():
        sel = dep["spec"]["selector"]["matchLabels"]
        assert any(p["spec"]["selector"]["matchLabels"] == sel for p in pdbs.values()), name
    nps = by_kind(docs, "NetworkPolicy")
    deny = nps["fs-default-deny"]["spec"]
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny and "egress" not in deny
    gw_in = nps["fs-gateway-ingress"]["spec"]["ingress"][0]
    assert gw_in["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_metrics_ports_match_the_code_and_are_scraped(docs):
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    pairs = dict(re.findall(r'"([a-z-]+)" (\d+)', helpers.split('define "fleetstream.metricsPort"')[1].split("end")[0]))
    assert {k: int(v) for k, v in pairs.items()} == ROLE_PORT_OFFSETS
    sm = by_kind(docs, "ServiceMonitor")["fs"]["spec"]
    ports = {e["port"] for e in sm["endpoints"]}
    for name, svc in by_kind(docs, "Service").items():
        assert svc["metadata"]["labels"]["fleetstream.io/metrics"] == "true"
        assert {p["name"] for p in svc["spec"]["ports"]} <= ports, name


def test_alert_rules_in_the_chart_are_the_ops_rules(docs):
    assert (CHART / "files" / "fleetstream-rules.yaml").read_bytes() == \
        (ROOT / "ops" / "alerts" / "fleetstream-rules.yaml").read_bytes(), \
        "cp ops/alerts/fleetstream-rules.yaml helm/fleetstream/files/"
    rule = by_kind(docs, "PrometheusRule")["fs"]
    assert {g["name"] for g in rule["spec"]["groups"]} >= {"fleetstream-slo-alerts"}


def _env(dep: dict) -> dict[str, dict]:
    return {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0].get("env") or []}


def test_every_role_gets_the_kafka_security_and_durability_settings(docs):
    """MSK IAM (adr/0130) and RF 3 / min ISR 2 (adr/0131) by default, in the names runtime/settings.py reads."""
    from runtime.settings import Settings

    for name, dep in by_kind(docs, "Deployment").items():
        env = _env(dep)
        values = {k: e.get("value") for k, e in env.items() if k.startswith("FLEETSTREAM_KAFKA_")}
        assert values["FLEETSTREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert values["FLEETSTREAM_KAFKA_SASL_MECHANISM"] == "AWS_MSK_IAM", name
        assert values["FLEETSTREAM_KAFKA_REPLICATION_FACTOR"] == "3", name
        assert values["FLEETSTREAM_KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert values["FLEETSTREAM_KAFKA_AWS_REGION"], name
        assert {k.removeprefix("FLEETSTREAM_").lower() for k in values} <= set(Settings.model_fields), name
        assert "FLEETSTREAM_KAFKA_SASL_PASSWORD" not in env  # IAM: no password at all


def test_scram_credentials_come_from_a_secret_reference_only():
    docs = render("--set", "kafka.saslMechanism=SCRAM-SHA-512", "--set", "kafka.sasl.existingSecret=fs-kafka",
                  "--set", "kafka.ssl.caFile=/etc/kafka-ca/ca.crt")
    for name, dep in by_kind(docs, "Deployment").items():
        env = _env(dep)
        for var, key in (("FLEETSTREAM_KAFKA_SASL_USERNAME", "username"), ("FLEETSTREAM_KAFKA_SASL_PASSWORD", "password")):
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "fs-kafka", "key": key}, name
            assert "value" not in env[var]
        assert env["FLEETSTREAM_KAFKA_SSL_CA_FILE"]["value"] == "/etc/kafka-ca/ca.crt"
    assert workload_problems(docs) == []


def test_emqx_values_authenticate_by_certificate_and_confine_devices_to_their_subtree():
    v = yaml.safe_load((CHART / "files" / "emqx-values.yaml").read_text())
    cfg = v["emqxConfig"]
    assert cfg["EMQX_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__VERIFY"] == "verify_peer"
    assert cfg["EMQX_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__FAIL_IF_NO_PEER_CERT"] == "true"
    assert cfg["EMQX_LISTENERS__TCP__DEFAULT__ENABLE"] == "false"
    assert cfg["EMQX_AUTHORIZATION__NO_MATCH"] == "deny"
    acl = [ln for ln in v["acl"].splitlines() if ln.startswith("{")]
    assert acl[-1] == "{deny, all}."
    assert '{allow, all, all, ["fs/${client_attrs.tenant}/${client_attrs.device}/#"]}.' in acl
    devices = [ln for ln in acl if ln.startswith("{allow, all,")]
    assert devices and not any('"fs/#"' in ln or '"#"' in ln or "+" in ln for ln in devices)
    assert (ROOT / "ops" / "compose" / "emqx-acl.conf").read_text() == v["acl"], "compose ACL drifted from the chart's"


def test_emqx_keeps_the_connectors_window_and_queue():
    """adr/0219: EMQX grants min(Receive Maximum, max_inflight) (default 32) and drops the OLDEST queued message
    past max_mqueue_len (default 1,000) — an acknowledged reading. Helm and compose both lift them for the
    connector."""
    from connectors.mqtt.settings import MqttSettings

    helm = yaml.safe_load((CHART / "files" / "emqx-values.yaml").read_text())["emqxConfig"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["emqx"]["environment"]
    window = MqttSettings().receive_maximum
    for cfg, prefix in ((helm, "EMQX_ZONES__PLATFORM__MQTT__"), (compose, "EMQX_MQTT__")):
        assert int(cfg[prefix + "MAX_INFLIGHT"]) >= window, prefix
        assert int(cfg[prefix + "MAX_MQUEUE_LEN"]) >= 1_000_000, prefix
    assert helm["EMQX_LISTENERS__SSL__PLATFORM__ZONE"] == "platform"  # the zone the connector's listener uses


def test_emqx_asks_the_platforms_hook_first_and_the_gateway_can_answer_and_ban(docs):
    """adr/0139: the hook before the ACL file, its body carrying what the hook reads; the gateway gets the
    broker kind, the REST API's credentials and the hook's secret, all from a Secret."""
    src = yaml.safe_load((CHART / "files" / "emqx-values.yaml").read_text())["emqxConfig"]["EMQX_AUTHORIZATION__SOURCES"]
    assert src.index("type = http") < src.index("type = file")
    assert "/internal/broker/emqx/authz" in src and '"Bearer "${FLEETSTREAM_HOOK_SECRET}' in src
    for field in ("clientid", "username", "action", "topic"):
        assert f'{field} = "${{{field}}}"' in src
    env = {e["name"]: e for e in by_kind(docs, "Deployment")["fs-gateway"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLEETSTREAM_MQTT_BROKER"]["value"] == "emqx"
    for name in ("FLEETSTREAM_EMQX_API_KEY", "FLEETSTREAM_EMQX_API_SECRET", "FLEETSTREAM_BROKER_HOOK_SECRET"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "fleetstream-emqx", name


def test_rendered_manifests_match_the_kubernetes_schemas(tmp_path, docs):
    out = tmp_path / "rendered.yaml"
    out.write_text(yaml.safe_dump_all([d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com")]))
    r = run([tool("kubernetes-validate"), "-k", KUBE_VERSION, "--strict", "--quiet", str(out)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_checkov_finds_nothing_in_the_rendered_chart(tmp_path):
    """checkov's Kubernetes policies on what CI would deploy (image pinned by digest); skips are listed
    with their reasons in ops/checkov/kubernetes.yaml."""
    docs = render("--set", f"image.digest={TEST_DIGEST}", "-f", str(CHART / "values-production.yaml"))
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump_all(docs))
    r = checkov(tmp_path, ROOT / "ops" / "checkov" / "kubernetes.yaml")
    report = _checkov_report(r)
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["passed"] > 100


def _checkov_report(r) -> dict:
    import json

    start = r.stdout.find("{")
    assert start >= 0, f"checkov printed no report (rc {r.returncode}): {r.stderr[-2000:]}"
    report = json.loads(r.stdout[start:])
    return report[0] if isinstance(report, list) else report


def test_checkov_fails_a_privileged_root_pod(tmp_path):
    """The scan can fail: the same chart rendered as root with privilege escalation is reported."""
    docs = render("--set", f"image.digest={TEST_DIGEST}", "--set", "podSecurityContext.runAsNonRoot=false",
                  "--set", "containerSecurityContext.allowPrivilegeEscalation=true")
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump_all(docs))
    report = _checkov_report(checkov(tmp_path, ROOT / "ops" / "checkov" / "kubernetes.yaml"))
    ids = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert "CKV_K8S_20" in ids  # allowPrivilegeEscalation

