"""The access plugin's known set (adr/0171): a device certificate the broker was not told about may use no topic,
not even its own; registering it opens exactly its namespace; unregistering closes its sessions and its topics;
the set survives a broker restart (an append-only journal, compacted when read)."""

from __future__ import annotations

import uuid

from fleetstream.stack.mosquitto import access_known_file

REFUSED = 0x87


def _topic(cn: str) -> str:
    return f"fs/{cn.replace('.', '/', 1)}/telemetry"


def test_only_a_registered_device_uses_its_topics_and_unregistering_cuts_it_off(broker, sessions):
    dev = broker.device(authorise=False)
    tenant, device = dev.cn.split(".", 1)
    unknown = sessions(dev)
    assert unknown.connect() == 0  # the certificate is valid; what it may do is the known set's question
    assert unknown.publish(_topic(dev.cn), b"{}") == REFUSED
    assert unknown.subscribe(f"fs/{tenant}/{device}/commands/#")[0] >= 0x80
    unknown.close()

    broker.control.authorise_devices(tenant, [device])
    assert f"+ {dev.cn}" in access_known_file(broker.s).read_text().splitlines()
    known = sessions(dev)
    assert known.connect() == 0
    assert known.publish(_topic(dev.cn), b"{}") < 0x80
    assert known.subscribe(f"fs/{tenant}/{device}/commands/#")[0] < 0x80
    assert known.publish(f"fs/{tenant}/someone-else/telemetry", b"{}") == REFUSED  # its namespace only

    broker.control.revoke_device(tenant, device)
    known.wait(lambda: known.disconnects, what="the unregistered device's session to be closed")
    after = sessions(dev)
    assert after.connect() == 0
    assert after.publish(_topic(dev.cn), b"{}") == REFUSED
    after.close()

    broker.control.enable_device(tenant, device)
    back = sessions(dev)
    assert back.connect() == 0
    assert back.publish(_topic(dev.cn), b"{}") < 0x80


def test_the_known_set_survives_a_broker_restart_and_its_journal_is_compacted(broker, sessions):
    kept, dropped = broker.device(), broker.device()
    broker.control.revoke_device(*dropped.cn.split(".", 1))
    journal = access_known_file(broker.s)
    assert f"- {dropped.cn}" in journal.read_text().splitlines()

    broker.stop()
    broker.start()
    lines = journal.read_text().splitlines()
    assert f"+ {kept.cn}" in lines and not any(line.endswith(dropped.cn) for line in lines)  # compacted
    s = sessions(kept)
    assert s.connect() == 0
    assert s.publish(_topic(kept.cn), b"{}") < 0x80
    d = sessions(dropped)
    assert d.connect() == 0
    assert d.publish(_topic(dropped.cn), b"{}") == REFUSED


def test_the_known_set_is_per_tenant_a_device_id_registered_in_one_tenant_opens_nothing_in_another(broker, sessions):
    device = f"shared-{uuid.uuid4().hex[:8]}"
    a = broker.device(device_id=device)  # tenant A's, registered
    b = broker.device(device_id=device, authorise=False)  # tenant B's, the same device id, not registered
    tenant_a, tenant_b = a.cn.split(".", 1)[0], b.cn.split(".", 1)[0]
    unknown = sessions(b)
    assert unknown.connect() == 0
    assert unknown.publish(_topic(b.cn), b"{}") == REFUSED  # A's registration does not make B's device known
    assert unknown.publish(_topic(a.cn), b"{}") == REFUSED
    unknown.close()

    broker.control.authorise_devices(tenant_b, [device])
    known = sessions(b)
    assert known.connect() == 0
    assert known.publish(_topic(b.cn), b"{}") < 0x80
    assert known.publish(_topic(a.cn), b"{}") == REFUSED  # the same device id in another tenant's namespace
    assert known.subscribe(f"fs/{tenant_a}/{device}/commands/#")[0] >= 0x80
    known.close()

    broker.control.revoke_device(tenant_b, device)  # unregistering B's device leaves A's known
    still = sessions(a)
    assert still.connect() == 0
    assert still.publish(_topic(a.cn), b"{}") < 0x80
    assert still.subscribe(f"fs/{tenant_a}/{device}/commands/#")[0] < 0x80
