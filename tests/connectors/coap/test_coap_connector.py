"""A constrained device on CoAP: it POSTs JSON or CBOR readings with a JWT it signed, observes its
command resource, and acknowledges commands. Answers come only after Kafka has the data, a connector
restart in the middle of a request loses nothing (the client retransmits), and bad input, suspended
devices and floods are refused with 4.xx and dead-lettered."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiocoap
import cbor2
import pytest
from aiocoap import Code, Message
from aiocoap.optiontypes import OpaqueOption

from connectors.base import Admission
from connectors.coap.adaptor import AUTH_OPTION, CBOR, JSON
from connectors.coap.config import CoapConfig
from connectors.coap.connector import CoapConnector
from connectors.commands import CommandRouter
from connectors.ratelimit import TokenBuckets
from connectors.registry import DeviceRegistry
from connectors.uplink import UplinkPublisher
from runtime.device_jwt import sign_device_jwt
from schemas import topics
from tests.conftest import PORT_OFFSET
from tests.connectors.support import (
    LoopThread,
    es256_keypair,
    new_tenant_id,
    publish_command,
    records,
    register_device,
)
from tests.utils.factories import wait_for

PORT = 25683 + PORT_OFFSET
URI = f"coap://127.0.0.1:{PORT}"


class Device:
    def __init__(self, tenant: str, device_id: str, priv: str):
        self.tenant, self.device_id, self.priv = tenant, device_id, priv

    def message(self, path: str, payload: bytes = b"", *, code=Code.POST, fmt=JSON, token: str | None = None,
                **kw) -> Message:
        m = Message(code=code, uri=f"{URI}/{path}", payload=payload, content_format=fmt, **kw)
        token = token or sign_device_jwt(self.priv, self.tenant, self.device_id)
        m.opt.add_option(OpaqueOption(AUTH_OPTION, token.encode()))
        return m


@pytest.fixture(scope="module")
def coap(infra, settings):
    loop = LoopThread("coap")
    tenant = new_tenant_id()
    devices = {}
    for name, status in (("meter-1", "active"), ("meter-2", "active"), ("flood", "active"), ("off", "suspended")):
        priv, pub = es256_keypair()
        register_device(settings.bootstrap_servers, tenant, name, status=status, jwt_public_keys=[pub])
        devices[name] = Device(tenant, name, priv)
    registry = DeviceRegistry(settings.bootstrap_servers, "test-coap").start()
    wait_for(lambda: all(registry.get(tenant, d) for d in devices), what="registry entries")
    uplink = UplinkPublisher(settings.bootstrap_servers, "coap")
    cfg = CoapConfig(host="127.0.0.1", port=PORT)

    def make():
        return CoapConnector(uplink, cfg, Admission(registry, TokenBuckets(20, 40)))

    conn = make()
    loop.run(conn.start())
    router = CommandRouter(settings.bootstrap_servers, conn, loop.loop, f"test-coap-{tenant}").start()
    client = loop.run(aiocoap.Context.create_client_context())
    state = {"tenant": tenant, "devices": devices, "conn": conn, "loop": loop, "client": client, "make": make}
    yield state
    router.stop()
    loop.run(client.shutdown())
    loop.run(state["conn"].stop())
    registry.stop()
    uplink.close()
    loop.close()


def _send(coap, msg: Message) -> Message:
    async def go():
        return await coap["client"].request(msg).response
    return coap["loop"].run(go(), timeout=120)


def _raw(settings, tenant, device, match, **kw):
    return records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
                   lambda r: r["tenant_id"] == tenant and r["device_id"] == device and match(r), **kw)


def test_json_and_cbor_readings_are_stored_before_2_04(coap, settings):
    dev = coap["devices"]["meter-1"]
    r = _send(coap, dev.message("telemetry", json.dumps({"values": {"kwh": 12.5, "on": True}}).encode()))
    assert r.code == Code.CHANGED and json.loads(r.payload) == {"accepted": 1, "rejected": 0}
    rec = _raw(settings, dev.tenant, dev.device_id, lambda x: "kwh" in x["values"])[0]
    assert rec["values"] == {"kwh": 12.5, "on": True} and rec["protocol"] == "coap"
    r = _send(coap, dev.message("telemetry", cbor2.dumps([{"values": {"volts": 230, "phase": "L1"}}]), fmt=CBOR))
    assert r.code == Code.CHANGED
    rec = _raw(settings, dev.tenant, dev.device_id, lambda x: "volts" in x["values"])[0]
    assert rec["values"] == {"volts": 230.0, "phase": "L1"}


def test_bad_input_is_4_00_dead_lettered_and_good_readings_beside_it_are_kept(coap, settings):
    dev = coap["devices"]["meter-1"]
    raw = b'{"values": {"kwh": ' + uuid.uuid4().hex.encode()
    r = _send(coap, dev.message("telemetry", raw))
    assert r.code == Code.BAD_REQUEST and r.payload.startswith(b"invalid_json")
    dead = records(settings.bootstrap_servers, topics.DEAD_LETTER.name, lambda x: x["raw"] == raw)[0]
    assert dead["reason_code"] == "invalid_json" and dead["device_id"] == "meter-1" and dead["source"] == "coap"
    r = _send(coap, dev.message("telemetry", json.dumps([{"values": {"ok_value": 1}},
                                                          {"values": {"bad": None}}]).encode()))
    assert r.code == Code.CHANGED and json.loads(r.payload) == {"accepted": 1, "rejected": 1}
    assert _raw(settings, dev.tenant, dev.device_id, lambda x: "ok_value" in x["values"])
    r = _send(coap, dev.message("telemetry", b"\xff\x00", fmt=CBOR))
    assert r.code == Code.BAD_REQUEST and r.payload.startswith(b"invalid_cbor")


def test_identity_comes_from_the_jwt_and_bad_tokens_or_suspended_devices_are_refused(coap, settings):
    d = coap["devices"]
    marker = uuid.uuid4().hex
    r = _send(coap, d["meter-1"].message("telemetry", json.dumps(
        {"device_id": "meter-2", "values": {"marker": marker}}).encode()))
    assert r.code == Code.CHANGED
    rec = records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name, lambda x: x["values"].get("marker") == marker)
    assert rec[0]["device_id"] == "meter-1" and rec[0]["tenant_id"] == coap["tenant"]
    no_token = Message(code=Code.POST, uri=f"{URI}/telemetry", payload=b'{"values": {"x": 1}}')
    assert _send(coap, no_token).code == Code.UNAUTHORIZED
    token = sign_device_jwt(d["meter-1"].priv, coap["tenant"], "meter-1")
    assert _send(coap, d["meter-1"].message("telemetry", b'{"values": {"x": 1}}', token=token)).code == Code.CHANGED
    replay = _send(coap, d["meter-1"].message("telemetry", b'{"values": {"x": 1}}', token=token))
    assert replay.code == Code.UNAUTHORIZED and b"token_replayed" in replay.payload
    forged = sign_device_jwt(d["meter-1"].priv, coap["tenant"], "meter-2")  # meter-1's key claiming to be meter-2
    assert _send(coap, d["meter-1"].message("telemetry", b'{"values": {"x": 1}}', token=forged)).code == \
        Code.UNAUTHORIZED
    assert _send(coap, d["off"].message("telemetry", b'{"values": {"x": 1}}')).code == Code.FORBIDDEN


def test_a_flooding_device_gets_4_29_and_its_readings_are_dead_lettered(coap, settings):
    dev = coap["devices"]["flood"]
    r = _send(coap, dev.message("telemetry", json.dumps([{"values": {"n": i}} for i in range(60)]).encode()))
    assert r.code == Code.TOO_MANY_REQUESTS
    dead = records(settings.bootstrap_servers, topics.DEAD_LETTER.name,
                   lambda x: x["device_id"] == "flood" and x["reason_code"] == "rate_limited")
    assert dead and dead[0]["tenant_id"] == coap["tenant"]


def test_an_observing_device_receives_its_command_and_acknowledges_it(coap, settings):
    dev, other = coap["devices"]["meter-2"], coap["devices"]["meter-1"]
    loop = coap["loop"]
    notes: asyncio.Queue = None

    async def observe():
        nonlocal notes
        notes = asyncio.Queue()
        req = coap["client"].request(dev.message("commands", code=Code.GET, fmt=None, observe=0))
        first = await req.response
        assert first.code == Code.CONTENT

        async def pump():
            async for n in req.observation:
                await notes.put(json.loads(n.payload))
        asyncio.ensure_future(pump())
        return json.loads(first.payload)

    assert loop.run(observe()) == {"commands": []}
    cid = publish_command(settings.bootstrap_servers, dev.tenant, dev.device_id, json.dumps({"relay": "open"}),
                          protocol="coap", name="switch")

    async def next_note():
        return await asyncio.wait_for(notes.get(), 60)
    note = loop.run(next_note(), timeout=90)
    assert note["commands"] == [{"command_id": cid, "name": "switch", "params": {"relay": "open"}}]
    sent = records(settings.bootstrap_servers, topics.COMMAND_ACKS.name, lambda r: r["command_id"] == cid)[0]
    assert sent["status"] == "SENT"
    ack = json.dumps({"command_id": cid, "status": "SUCCEEDED", "result": {"relay": "open"}}).encode()
    assert _send(coap, other.message("commands/ack", ack)).code == Code.NOT_FOUND  # not meter-1's command
    assert _send(coap, dev.message("commands/ack", ack)).code == Code.CHANGED
    done = records(settings.bootstrap_servers, topics.COMMAND_ACKS.name,
                   lambda r: r["command_id"] == cid and r["status"] == "SUCCEEDED")[0]
    assert json.loads(done["result_json"]) == {"relay": "open"} and done["device_id"] == "meter-2"


def test_a_connector_restart_mid_stream_loses_nothing(coap, settings):
    """The contract is at-least-once: a reading is stored when the device got 2.04, and a device retries
    until it does. While the connector is down the request fails (here at once: the closed UDP port
    answers ICMP unreachable); after the restart the device's retry is stored."""
    dev, loop = coap["devices"]["meter-1"], coap["loop"]
    loop.run(coap["conn"].stop())
    marker = uuid.uuid4().hex
    body = json.dumps({"values": {"restart": marker}}).encode()

    async def send_until_stored(restart_after_failures: int) -> tuple[int, Message]:
        failures = 0
        while True:
            try:
                r = await coap["client"].request(dev.message("telemetry", body)).response
                if r.code == Code.CHANGED:
                    return failures, r
            except aiocoap.error.NetworkError:
                pass
            failures += 1
            if failures == restart_after_failures:
                coap["conn"] = coap["make"]()
                await coap["conn"].start()
            await asyncio.sleep(0.5)

    failures, r = loop.run(send_until_stored(3), timeout=180)
    assert failures >= 3 and r.code == Code.CHANGED
    assert _raw(settings, dev.tenant, dev.device_id, lambda x: x["values"].get("restart") == marker)


COAP_POISON = [  # (payload, content format, the code of the 4.00 and of the dead letter)
    (b'{"ts": NaN, "values": {"t": 1}}', JSON, "bad_timestamp"),
    (b'{"ts": Infinity, "values": {"t": 1}}', JSON, "bad_timestamp"),
    (b'{"values": {"s": "\\ud800"}}', JSON, "invalid_text"),
    (b'{"values": {"n": ' + b"9" * 400 + b"}}", JSON, "out_of_range"),
    (b"[" * 5000 + b"]" * 5000, JSON, "too_deep"),  # 10 kB: sent blockwise
    (cbor2.dumps({"ts": float("nan"), "values": {"t": 1}}), CBOR, "bad_timestamp"),
    (cbor2.dumps({"values": {"n": 10 ** 400}}), CBOR, "out_of_range"),  # a bignum
    (cbor2.dumps({"values": {"b": b"\x00\x01"}}), CBOR, "wrong_type"),  # a byte string
    (cbor2.dumps({"values": {1: 2.5}}), CBOR, "bad_metric_name"),  # a key that is not text
    (b"\x81" * 1000 + b"\x00", CBOR, "invalid_cbor"),  # nested past cbor2's limit
]


def test_poison_payloads_get_a_4_00_with_their_code_and_a_dead_letter(coap, settings):
    dev = coap["devices"]["meter-2"]
    for payload, fmt, code in COAP_POISON:
        r = _send(coap, dev.message("telemetry", payload, fmt=fmt))
        assert r.code == Code.BAD_REQUEST, (code, r.code, r.payload)
        assert r.payload.startswith(code.encode() + b": "), (code, r.payload)
    dead = records(settings.bootstrap_servers, topics.DEAD_LETTER.name,
                   lambda x: x["device_id"] == "meter-2" and x["tenant_id"] == dev.tenant,
                   count=len(COAP_POISON))
    assert sorted(d["reason_code"] for d in dead) == sorted(code for _, _, code in COAP_POISON)
    assert all(d["reason"] and d["source"] == "coap" for d in dead)
    r = _send(coap, dev.message("telemetry", cbor2.dumps({"values": {"after": 1}}), fmt=CBOR))
    assert r.code == Code.CHANGED  # and the device's next reading lands
