"""Measures records/s per connector on this machine: ``python -m fleetstream.bench.connectors [--seconds 10]``.

Starts its own Kafka, Mosquitto and Postgres (ports offset by ``FLEETSTREAM_BENCH_PORT_OFFSET``, default
200) and the gateway and MQTT connector, then drives each protocol with a real peer for a fixed time and
prints the rate of records Kafka confirmed. A measurement script, not a test: numbers depend on the box.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import tempfile
import threading
import time
import uuid
from pathlib import Path

from runtime.settings import Settings

OFFSET = int(os.environ.get("FLEETSTREAM_BENCH_PORT_OFFSET", "200"))  # the connectors engineer's offset


def _settings() -> Settings:
    ports = {k: v + OFFSET for k, v in dict(kafka_port=29092, kafka_controller_port=29093, mqtt_tls_port=28883,
                                            postgres_port=25432, gateway_port=28080, schema_registry_port=28081,
                                            streams_web_port=28090, metrics_port=0).items()}
    ports["metrics_port"] = 0
    # the per-device limits would otherwise be what we measure (one device sends everything here)
    return Settings(data_dir=Path(tempfile.mkdtemp(prefix="fleetstream-bench-")), ingest_rate_per_s=1e9,
                    ingest_burst=1e9, **ports)


def _registry(s: Settings, tenant: str, devices: list[str], keys: dict[str, str] | None = None):

    from connectors.registry import DeviceRegistry
    from schemas import codec, device_key, topics

    p = s.kafka.producer()
    for d in devices:
        rec = {"tenant_id": tenant, "device_id": d, "status": "active", "device_type": None, "tags": [],
               "attributes": {}, "jwt_public_keys": [keys[d]] if keys else [], "version": 1,
               "time": int(time.time() * 1000)}
        p.produce(topics.REGISTRY.name, codec("registry_entry").encode(rec), device_key(tenant, d))
    p.flush(30)
    reg = DeviceRegistry(s.kafka, f"bench-{uuid.uuid4().hex[:6]}").start()
    while not all(reg.get(tenant, d) for d in devices):
        time.sleep(0.1)
    return reg


async def bench_modbus(s: Settings, seconds: float) -> float:
    from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
    from pymodbus.server import ModbusTcpServer

    from connectors.base import Admission
    from connectors.modbus.config import ModbusSiteConfig
    from connectors.modbus.connector import ModbusConnector
    from connectors.siteconfig import validate_site
    from connectors.uplink import UplinkPublisher

    port = 25502 + OFFSET
    units = {u: ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, [7] * 64)) for u in range(1, 11)}
    server = ModbusTcpServer(ModbusServerContext(devices=units, single=False), address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    tenant = str(uuid.uuid4())
    devices = [{"device_id": f"plc-{u}", "unit_id": u, "interval_s": 0.001,
                "points": [{"metric": f"m{i}", "address": i * 2, "type": "float32"} for i in range(10)]}
               for u in units]
    site = validate_site({"site_id": "bench", "tenant_id": tenant, "gateways": [
        {"host": "127.0.0.1", "port": port, "devices": devices}]}, ModbusSiteConfig)
    reg = _registry(s, tenant, [d["device_id"] for d in devices])
    uplink = UplinkPublisher(s.kafka, "modbus")
    conn = ModbusConnector(uplink, site, Admission(reg, None))
    await conn.start()
    await asyncio.sleep(seconds)
    await conn.stop()
    n = conn.stats["readings"]
    uplink.close()
    reg.stop()
    await server.shutdown()
    return n / seconds


async def bench_opcua(s: Settings, seconds: float) -> float:
    from asyncua import Server

    from connectors.base import Admission
    from connectors.opcua.config import OpcUaSiteConfig
    from connectors.opcua.connector import OpcUaConnector
    from connectors.siteconfig import validate_site
    from connectors.uplink import UplinkPublisher

    endpoint = f"opc.tcp://127.0.0.1:{24840 + OFFSET}/bench"
    server = Server()
    await server.init()
    server.set_endpoint(endpoint)
    idx = await server.register_namespace("urn:bench")
    obj = await server.nodes.objects.add_object(idx, "Bench")
    nodes = [await obj.add_variable(idx, f"v{i}", 0.0) for i in range(100)]
    await server.start()
    tenant = str(uuid.uuid4())
    site = validate_site({"site_id": "bench", "tenant_id": tenant, "servers": [
        {"endpoint": endpoint, "publishing_interval_ms": 50, "devices": [
            {"device_id": "line", "nodes": [{"node_id": n.nodeid.to_string(), "metric": f"v{i}"}
                                            for i, n in enumerate(nodes)]}]}]}, OpcUaSiteConfig)
    reg = _registry(s, tenant, ["line"])
    uplink = UplinkPublisher(s.kafka, "opcua")
    conn = OpcUaConnector(uplink, site, Admission(reg, None))
    await conn.start()
    while not conn.health().healthy:
        await asyncio.sleep(0.1)
    start = conn.stats["readings"]
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < seconds:  # the server changes every variable as fast as it can
        k += 1
        for n in nodes:
            await n.write_value(float(k))
        await asyncio.sleep(0)
    await asyncio.sleep(0.5)
    n_read = conn.stats["readings"] - start
    await conn.stop()
    uplink.close()
    reg.stop()
    await server.stop()
    return n_read / (time.monotonic() - t0)


def _key() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    k = ec.generate_private_key(ec.SECP256R1())
    return (k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode(),
            k.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode())


async def bench_coap(s: Settings, seconds: float, batch: int) -> float:
    import aiocoap
    from aiocoap import Code, Message
    from aiocoap.optiontypes import OpaqueOption

    from connectors.base import Admission
    from connectors.coap.adaptor import AUTH_OPTION
    from connectors.coap.config import CoapConfig
    from connectors.coap.connector import CoapConnector
    from connectors.uplink import UplinkPublisher
    from runtime.device_jwt import sign_device_jwt

    port = 25683 + OFFSET
    tenant = str(uuid.uuid4())
    priv, pub = _key()
    reg = _registry(s, tenant, ["meter"], {"meter": pub})
    uplink = UplinkPublisher(s.kafka, "coap")
    conn = CoapConnector(uplink, CoapConfig(host="127.0.0.1", port=port), Admission(reg, None))
    await conn.start()
    client = await aiocoap.Context.create_client_context()
    body = json.dumps([{"values": {"kwh": i, "v": 230.0}} for i in range(batch)]).encode()
    stored = 0
    t0 = time.monotonic()

    async def worker():
        nonlocal stored
        while time.monotonic() - t0 < seconds:
            m = Message(code=Code.POST, uri=f"coap://127.0.0.1:{port}/telemetry", payload=body, content_format=50)
            m.opt.add_option(OpaqueOption(AUTH_OPTION, sign_device_jwt(priv, tenant, "meter").encode()))
            r = await client.request(m).response
            if r.code == Code.CHANGED:
                stored += batch

    await asyncio.gather(*[worker() for _ in range(16)])
    took = time.monotonic() - t0
    await client.shutdown()
    await conn.stop()
    uplink.close()
    reg.stop()
    return stored / took


def bench_http(s: Settings, seconds: float, batch: int) -> float:
    import httpx

    from gateway.admin import Admin
    from runtime.device_jwt import sign_device_jwt, sign_key_proof

    admin = Admin(s)
    try:
        tenant = admin.create_tenant(f"bench-{uuid.uuid4().hex[:6]}")["tenant_id"]
        admin.create_device(tenant, "web")
        priv, pub = _key()
        admin.add_jwt_key(tenant, "web", pub, proof=sign_key_proof(priv, tenant, "web"), actor="bench")
    finally:
        admin.close()
    body = json.dumps([{"values": {"kwh": i}} for i in range(batch)]).encode()
    stored, lock, t0 = 0, threading.Lock(), time.monotonic()

    def worker():
        nonlocal stored
        with httpx.Client(base_url=f"http://{s.host}:{s.gateway_port}", timeout=30) as c:
            while time.monotonic() - t0 < seconds:
                r = c.post("/v1/ingest", content=body, headers={
                    "Authorization": f"Bearer {sign_device_jwt(priv, tenant, 'web')}", "Content-Type": "application/json"})
                if r.status_code == 202:
                    with lock:
                        stored += r.json()["accepted"]
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stored / (time.monotonic() - t0)


def bench_mqtt(s: Settings, seconds: float) -> float:
    import paho.mqtt.client as mqtt

    from gateway.admin import Admin
    from schemas.namespace import device_topics

    admin = Admin(s)
    try:
        tenant = admin.create_tenant(f"bench-{uuid.uuid4().hex[:6]}")["tenant_id"]
        cert_dir = s.root / "bench-device"
        admin.create_device(tenant, "pub", cert_dir=cert_dir)
    finally:
        admin.close()
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert_dir / "ca.crt"))
    ctx.load_cert_chain(str(cert_dir / "device.crt"), str(cert_dir / "device.key"))
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{tenant}.pub", protocol=mqtt.MQTTv5)
    c.tls_set_context(ctx)
    c.max_inflight_messages_set(1000)
    c.connect(s.mqtt_broker_host, s.mqtt_tls_port)
    c.loop_start()
    topic = device_topics(tenant, "pub")["telemetry"]
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        c.publish(topic, b'{"values": {"t": 21.5}}', qos=1)
        n += 1
        if n % 1000 == 0:
            time.sleep(0)
    sent_for = time.monotonic() - t0
    # the rate that counts: records the connector confirmed in Kafka, counted from the topic
    from confluent_kafka import TopicPartition

    from schemas import codec_for, topics

    cons = s.kafka.consumer(f"bench-{time.time_ns()}")
    md = cons.list_topics(topics.TELEMETRY_RAW.name, timeout=10).topics[topics.TELEMETRY_RAW.name]
    cons.assign([TopicPartition(topics.TELEMETRY_RAW.name, p, -2) for p in md.partitions])
    got, first, last, idle = 0, None, None, time.monotonic()
    while got < n and time.monotonic() - idle < 15:
        for m in cons.consume(1000, 0.5):
            if m.error():
                continue
            rec = codec_for(m.value()).decode(m.value())
            if rec["tenant_id"] == tenant:
                got += 1
                first = rec["receive_time"] if first is None else min(first, rec["receive_time"])
                last = rec["receive_time"] if last is None else max(last, rec["receive_time"])
                idle = time.monotonic()
    cons.close()
    c.loop_stop()
    c.disconnect()
    span = max((last - first) / 1000, sent_for) if first else sent_for
    return got / span


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--batch", type=int, default=50, help="readings per HTTP/CoAP request")
    args = ap.parse_args()
    from fleetstream.stack.supervisor import Stack

    s = _settings()
    stack = Stack(s)
    out: dict[str, float] = {}
    try:
        stack.start_infra()
        stack.start_platform(("gateway",))
        cfg = s.root / "mqtt-bench.yaml"
        cfg.write_text("client_id: bench-0\nrate_limit: {per_second: 1000000000, burst: 1000000000}\n")
        stack._spawn(stack.platform_child("connector-mqtt", ["--config", str(cfg)]))
        out["modbus (10 units × 10 float32, as fast as polled)"] = asyncio.run(bench_modbus(s, args.seconds))
        out["opcua (100 nodes, publishing 50 ms)"] = asyncio.run(bench_opcua(s, args.seconds))
        out[f"coap (16 concurrent CON POSTs × {args.batch} readings)"] = asyncio.run(
            bench_coap(s, args.seconds, args.batch))
        out[f"http (8 clients × {args.batch} readings per POST)"] = bench_http(s, args.seconds, args.batch)
        out["mqtt (one QoS1 publisher, 1 reading per message)"] = bench_mqtt(s, args.seconds)
    finally:
        stack.stop()
    for name, rate in out.items():
        print(f"{name:<58} {rate:>10,.0f} records/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
