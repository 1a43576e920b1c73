"""Observability, from the SRE's point of view: every role exposes Prometheus series that the alerts and
dashboards rely on, labels cannot explode with the number of tenants, logs are one JSON object per line
carrying tenant/device/trace ids, and a trace id given by a client comes back and reaches the logs."""

from __future__ import annotations

import json
import logging
import time

import httpx
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from runtime import observability as obs


def _families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_tenant_label_is_capped():
    labels = obs.TenantLabels(cap=3)
    got = [labels(f"t{i}") for i in range(10)]
    assert got[:3] == ["t0", "t1", "t2"] and set(got[3:]) == {obs.OTHER_TENANT}
    assert labels("t1") == "t1" and labels(None) == obs.OTHER_TENANT


def test_traceparent_parsing_accepts_w3c_and_rejects_garbage():
    tp = obs.new_traceparent()
    assert obs.parse_traceparent(tp) == tp.split("-")[1]
    assert obs.parse_traceparent("00-" + "0" * 32 + "-" + "1" * 16 + "-01") is None
    assert obs.parse_traceparent("not-a-trace") is None and obs.parse_traceparent(None) is None


def test_json_logs_carry_tenant_device_and_trace_ids():
    fmt = obs.JsonFormatter("connector-mqtt")
    rec = logging.LogRecord("fleetstream.x", logging.WARNING, __file__, 1, "reading refused: %s", ("bad",), None)
    with obs.log_context(tenant_id="t-1", device_id="d-1", trace_id="a" * 32):
        line = fmt.format(rec)
    out = json.loads(line)
    assert out["msg"] == "reading refused: bad" and out["level"] == "warning" and out["role"] == "connector-mqtt"
    assert (out["tenant_id"], out["device_id"], out["trace_id"]) == ("t-1", "d-1", "a" * 32)
    assert "tenant_id" not in json.loads(fmt.format(rec))  # context is gone afterwards


def test_consumer_lag_gauge_from_librdkafka_statistics():
    cfg = obs.consumer_stats_config("g-test")
    stats = {"topics": {"fleetstream.telemetry": {"partitions": {
        "0": {"consumer_lag": 10}, "1": {"consumer_lag": 5}, "-1": {"consumer_lag": 99}, "2": {"consumer_lag": -1}}}}}
    cfg["stats_cb"](json.dumps(stats))
    assert obs.KAFKA_CONSUMER_LAG.labels(group="g-test", topic="fleetstream.telemetry")._value.get() == 15


def test_sink_batch_observation_feeds_latency_histograms():
    now_ms = int(time.time() * 1000)
    before = obs.E2E_LATENCY_SECONDS.labels(sink="UnitSink")._sum.get()
    obs.observe_sink_batch("UnitSink", 0.02, [{"receive_time": now_ms - 3000}, {"receive_time": now_ms}])
    assert 2.5 < obs.E2E_LATENCY_SECONDS.labels(sink="UnitSink")._sum.get() - before < 30
    assert obs.SINK_RECORDS.labels(sink="UnitSink")._value.get() >= 2


def test_metrics_ports_are_distinct_per_role():
    ports = [obs.metrics_port_for(9100, r) for r in obs.ROLE_PORT_OFFSETS]
    assert len(set(ports)) == len(ports)
    try:
        obs.metrics_port_for(9100, "nope")
    except ValueError as exc:
        assert "known" in str(exc)
    else:
        raise AssertionError("unknown role accepted")


def test_text_format_is_parseable():
    reg = CollectorRegistry()
    Counter("x_total", "x", registry=reg).inc()
    from prometheus_client import generate_latest

    assert "x" in _families(generate_latest(reg).decode())


# -- against the running stack ------------------------------------------------------------------------------
def test_gateway_serves_metrics_with_request_series_and_echoes_the_trace(stack, gateway, factory):
    """The gateway's /metrics has request series by route template and, since it hosts the embedded sink,
    the sink's batch and end-to-end latency once a reading has been stored."""
    from schemas.namespace import device_topics
    from tests.utils.factories import publish_json, wait_for

    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = gateway.get("/healthz", headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
    assert r.status_code == 200 and obs.parse_traceparent(r.headers["traceparent"]) == trace
    gateway.get("/v1/devices/nope/telemetry")  # 401: counted under its route template, not the raw path
    t = factory.tenant("gwmetrics")
    dev = factory.device(t)
    client = factory.mqtt_client(dev)
    publish_json(client, device_topics(t.tenant_id, dev.device_id)["telemetry"],
                 {"ts": int(time.time() * 1000), "values": {"temperature": 19.5}})
    client.disconnect()

    def sink_observed():
        fams = _families(gateway.get("/metrics").text)
        fam = fams.get("fleetstream_e2e_latency_seconds")
        return fams if fam and any(s.name.endswith("_count") and s.value > 0 for s in fam.samples) else None

    fams = wait_for(sink_observed, timeout=60, what="the sink's latency series on the gateway")
    for name in ("fleetstream_http_requests", "fleetstream_http_request_seconds", "fleetstream_build_info",
                 "fleetstream_sink_batch_seconds", "fleetstream_sink_records", "fleetstream_kafka_consumer_lag"):
        assert name in fams, f"{name} missing from gateway /metrics"
    samples = [s for s in fams["fleetstream_http_requests"].samples if s.name.endswith("_total")]
    routes = {s.labels["route"] for s in samples}
    assert "/healthz" in routes and "/v1/devices/{device_id}/telemetry" in routes
    assert not any("nope" in r for r in routes)


def test_mqtt_connector_counts_ingest_per_protocol_and_tenant(stack, settings, factory):
    """A device's reading is counted by the connector that took it, under its tenant's label."""
    from schemas.namespace import device_topics
    from tests.utils.factories import publish_json, wait_for

    port = obs.metrics_port_for(settings.metrics_port, "connector-mqtt")
    t = factory.tenant("metrics")
    dev = factory.device(t)
    client = factory.mqtt_client(dev)
    publish_json(client, device_topics(t.tenant_id, dev.device_id)["telemetry"],
                 {"ts": int(time.time() * 1000), "values": {"temperature": 20.5}})
    client.disconnect()

    def counted():
        text = httpx.get(f"http://{settings.host}:{port}/metrics", timeout=5).text
        fam = _families(text).get("fleetstream_ingest_messages")
        return fam and [s for s in fam.samples if s.labels.get("tenant") == t.tenant_id
                        and s.labels.get("protocol") == "mqtt" and s.value >= 1]

    assert wait_for(counted, timeout=30, what="the connector's ingest counter")


def test_route_label_is_the_template_never_the_raw_path():
    """Device ids in paths must not become label values (one series per device would explode)."""
    assert obs._route_template("/v1/devices/dev-42/telemetry", {"device_id": "dev-42"}) == \
        "/v1/devices/{device_id}/telemetry"
    assert obs._route_template("/healthz", {}) == "/healthz"


def test_a_trace_id_in_context_travels_into_kafka_headers(stack, settings):
    """An SRE following one HTTP ingest request finds its trace id on the Kafka record the agents read."""
    from confluent_kafka import Consumer, TopicPartition

    from connectors.uplink import UplinkPublisher
    from schemas import topics

    trace = obs.new_traceparent().split("-")[1]
    device = f"trace-{time.time_ns()}"
    up = UplinkPublisher(settings.bootstrap_servers, "http")
    try:
        with obs.log_context(trace_id=trace):
            up.telemetry("t-trace", device, int(time.time() * 1000), {"x": 1.0}, int(time.time() * 1000))
        up.telemetry("t-trace", device + "-untraced", int(time.time() * 1000), {"x": 1.0}, int(time.time() * 1000))
        assert up.flush(10) == 0
    finally:
        up.close()
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"trace-{time.time_ns()}",
                  "enable.auto.commit": False})
    found = {}
    try:
        topic = topics.TELEMETRY_RAW.name
        md = c.list_topics(topic, timeout=10).topics[topic]
        c.assign([TopicPartition(topic, p, -2) for p in md.partitions])
        deadline = time.monotonic() + 30
        while len(found) < 2 and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error() and m.key() and m.key().decode().startswith(f"t-trace:{device}"):
                found[m.key().decode()] = dict(m.headers() or [])
    finally:
        c.close()
    traced, untraced = found[f"t-trace:{device}"], found[f"t-trace:{device}-untraced"]
    assert obs.parse_traceparent(traced["traceparent"].decode()) == trace
    assert "traceparent" not in untraced and untraced["fs-source"] == b"http"
