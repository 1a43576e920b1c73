"""Which device events announce a sub-device the control plane registers (adr/0158); pure."""

from __future__ import annotations

import uuid

from gateway.sub_devices import Sighting, sightings

T = str(uuid.uuid4())


def _ev(device, kind="PROVISIONED", tenant=T, t=1, **details):
    return {"tenant_id": tenant, "device_id": device, "event_type": kind, "time": t, "details": details}


def test_gateway_and_sparkplug_sub_devices_once_each_in_order():
    got = sightings([
        _ev("gw1.a", gateway="gw1"), _ev("gw1.a", "ONLINE", t=2, gateway="gw1"),
        _ev("edge1.pump1", "ONLINE", edge_node="edge1", sparkplug_device="pump1"),
        _ev("gw1.b", "CONNECTED", gateway="gw1"),
    ])
    assert got == {T: [Sighting("gw1.a", "gw1", "gateway", 1), Sighting("edge1.pump1", "edge1", "sparkplug", 1),
                       Sighting("gw1.b", "gw1", "gateway", 1)]}


def test_parents_offline_events_foreign_ids_and_non_tenants_are_not_sightings():
    assert sightings([
        _ev("edge1", "ONLINE", edge_node="edge1"),  # an NBIRTH: the edge node itself
        _ev("gw1.a", "OFFLINE", gateway="gw1"),
        _ev("gw2.a", gateway="gw1"),  # not gw1's id: never registered under gw1
        _ev("gw1.", gateway="gw1"),
        _ev("plain", "ONLINE"),
        _ev("gw1.a", tenant="not-a-tenant", gateway="gw1"),
    ]) == {}
