"""Finding 1 of issue 19 at the broker: a client id belongs to the certificate that uses it (adr/0100).

A device may connect only as ``<tenant>.<device>`` (its certificate's CN); platform ids (``fleetstream-…``)
only with platform certificates. A device that tries another id is refused at CONNECT and the session that
owns the id is not touched."""

from __future__ import annotations

import paho.mqtt.client as mqtt

CONNECTOR_ID = "fleetstream-connector-0"
NOT_AUTHORIZED_V5 = 0x87
NOT_AUTHORIZED_V311 = 0x87  # the broker answers 3.1.1 return code 5; paho reports it as reason 0x87


def test_a_device_cannot_take_the_connectors_or_another_tenants_device_id(broker, sessions):
    connector = sessions(broker.platform("fleetstream-connector"), CONNECTOR_ID, clean_start=False)
    assert connector.connect() == 0
    assert connector.subscribe("$share/g/fs/+/+/telemetry") == [1]
    device_a = broker.device()
    a = sessions(device_a)
    assert a.connect() == 0

    intruder = broker.device()  # another tenant's device, with a valid certificate
    for stolen in (CONNECTOR_ID, device_a.cn, f"{CONNECTOR_ID}-downlink", "fleetstream-dynsec-admin-1"):
        for protocol, refused in ((mqtt.MQTTv5, NOT_AUTHORIZED_V5), (mqtt.MQTTv311, NOT_AUTHORIZED_V311)):
            s = sessions(intruder, stolen, protocol=protocol)
            assert s.connect() == refused, f"{stolen} over {protocol}"
            s.wait(lambda s=s: s.disconnects, what="the refused session to close")

    # the owners of those ids never noticed: same connection, nothing disconnected, and they still work
    assert connector.connected and a.connected and not connector.disconnects and not a.disconnects
    assert a.publish(f"fs/{device_a.cn.replace('.', '/', 1)}/telemetry", b'{"values": {"t": 1}}') == 0
    connector.wait(lambda: connector.messages, what="the connector to receive A's reading")


def test_a_device_connects_only_under_its_own_identity(broker, sessions):
    me = broker.device()
    assert sessions(me).connect() == 0
    assert sessions(me, "", protocol=mqtt.MQTTv311).connect() == NOT_AUTHORIZED_V311  # broker-assigned id
    assert sessions(me, me.cn + "x").connect() == NOT_AUTHORIZED_V5


def test_a_username_in_connect_does_not_change_who_a_device_is(broker, sessions):
    """The certificate decides the identity: a device claiming the connector's username gets no platform
    rights (it may not read other devices' topics)."""
    me = broker.device()
    s = sessions(me)
    s.client.username_pw_set("fleetstream-connector", "x")
    assert s.connect() == 0
    assert s.subscribe("fs/#") == [NOT_AUTHORIZED_V5]


def test_a_certificate_that_names_another_tenants_device_is_refused(broker, sessions):
    """A tenant CA signs only its own tenant's devices: a certificate from tenant B's CA whose CN names a
    device of tenant A (as a leaked or misused tenant CA key could produce) is refused."""

    from runtime.pki import cert_pem, key_pem, new_key, write_private
    from tests.broker.conftest import Identity

    victim = broker.device()
    tenant_b = broker.device().cn.split(".", 1)[0]
    ca_b = broker.cas.ensure(tenant_b)
    key = new_key()
    forged = ca_b.sign(victim.cn, key.public_key(), days=1)
    d = broker.s.root / "forged"
    d.mkdir(exist_ok=True)
    (d / "device.crt").write_bytes(cert_pem(forged) + cert_pem(ca_b.cert))
    write_private(d / "device.key", key_pem(key))
    assert sessions(Identity(victim.cn, d / "device.crt", d / "device.key")).connect() == NOT_AUTHORIZED_V5
