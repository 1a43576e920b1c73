"""Finding 2 of issue 19 at the broker: a revoked certificate, a suspended device and every device of a
suspended tenant are refused at CONNECT and their live sessions are closed in the same control round trip;
allowing them again restores access (adr/0100). Through the control plane's API: tests/broker/test_stack.py."""

from __future__ import annotations

from fleetstream.stack.mosquitto import access_state_file

REFUSED = 0x87
ADMINISTRATIVE_ACTION = 0x98


def _topic(cn: str) -> str:
    return f"fs/{cn.replace('.', '/', 1)}/telemetry"


def test_a_revoked_certificate_is_cut_off_while_the_devices_other_certificate_works(broker, sessions):
    old = broker.device()
    tenant, device = old.cn.split(".", 1)
    new = broker.device(tenant, device, authorise=False)  # a second certificate of the same device
    s = sessions(old)
    assert s.connect() == 0

    assert broker.access.revoke_certificates([old.serial]) == 1  # one live session closed
    s.wait(lambda: s.disconnects, what="the revoked certificate's session to be closed")
    assert s.disconnects[0] in (ADMINISTRATIVE_ACTION, 7)  # MQTT 5 DISCONNECT 0x98, or paho's "connection lost"
    assert sessions(old).connect() == REFUSED
    fresh = sessions(new)
    assert fresh.connect() == 0
    assert fresh.publish(_topic(new.cn), b'{"values": {"t": 1}}') < 0x80
    assert f"serial {old.serial}" in access_state_file(broker.s).read_text()  # kept across broker restarts


def test_a_suspended_device_is_cut_off_and_resuming_restores_it(broker, sessions):
    dev = broker.device()
    tenant, device = dev.cn.split(".", 1)
    neighbour = broker.device(tenant)
    s, n = sessions(dev), sessions(neighbour)
    assert s.connect() == 0 and n.connect() == 0

    broker.access.suspend_device(tenant, device)
    s.wait(lambda: s.disconnects, what="the suspended device's session to be closed")
    assert sessions(dev).connect() == REFUSED
    assert n.connected and not n.disconnects  # the same tenant's other device is not affected

    broker.access.resume_device(tenant, device)
    again = sessions(dev)
    assert again.connect() == 0
    assert again.publish(_topic(dev.cn), b'{"values": {"t": 1}}') < 0x80


def test_every_device_of_a_suspended_tenant_is_cut_off_and_resuming_restores_them(broker, sessions):
    first = broker.device()
    tenant = first.cn.split(".", 1)[0]
    devices = [first] + [broker.device(tenant) for _ in range(4)]
    other_tenant = broker.device()
    live = [sessions(d) for d in devices]
    bystander = sessions(other_tenant)
    connector = sessions(broker.platform("fleetstream-connector"), "fleetstream-connector-suspend")
    assert all(s.connect() == 0 for s in [*live, bystander, connector])

    assert broker.access.suspend_tenant(tenant) == len(devices)
    for s in live:
        s.wait(lambda s=s: s.disconnects, what="every device of the tenant to be cut off")
    assert all(sessions(d).connect() == REFUSED for d in devices)
    assert bystander.connected and connector.connected and not bystander.disconnects and not connector.disconnects
    assert sessions(broker.device(tenant)).connect() == REFUSED  # a certificate issued after the suspension too

    broker.access.resume_tenant(tenant)
    back = sessions(devices[0])
    assert back.connect() == 0
    assert back.publish(_topic(devices[0].cn), b'{"values": {"t": 1}}') < 0x80


def test_only_the_control_plane_may_change_who_is_denied(broker, sessions):
    dev = broker.device()
    s = sessions(dev)
    assert s.connect() == 0
    assert s.publish("$CONTROL/fleetstream-access/v1", f"x deny tenant {dev.cn.split('.')[0]}") == REFUSED
    connector = sessions(broker.platform("fleetstream-connector"), "fleetstream-connector-ctl")
    assert connector.connect() == 0
    assert connector.publish("$CONTROL/fleetstream-access/v1", f"x deny device {dev.cn}") == REFUSED
    assert s.connected, s.disconnects
    assert sessions(dev, dev.cn).connect() == 0


def test_the_deny_list_survives_a_broker_restart(tmp_path):
    """The plugin keeps what it denies in its file and reads it at start: a restarted broker still refuses."""
    from runtime.settings import Settings
    from tests.broker.conftest import Broker, Session
    from tests.conftest import PORT_OFFSET

    b = Broker(Settings(data_dir=tmp_path, mqtt_tls_port=28934 + PORT_OFFSET))
    b.start()
    try:
        dev, revoked, tenant_dev = b.device(), b.device(), b.device()
        b.access.suspend_device(*dev.cn.split(".", 1))
        b.access.revoke_certificates([revoked.serial])
        b.access.suspend_tenant(tenant_dev.cn.split(".", 1)[0])
        b.stop()
        b.child = type(b.child)(b.child.name, b.child.argv, b.child.log)  # the same broker, started again
        b.start()
        for who in (dev, revoked, tenant_dev):
            s = Session(b, who, who.cn)
            assert s.connect() == REFUSED, who.cn
            s.close()
        other = b.device()
        s = Session(b, other, other.cn)
        assert s.connect() == 0  # the rest of the fleet is not affected
        s.close()
    finally:
        b.stop()
