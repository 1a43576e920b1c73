"""The simulated fleet's pure parts: devices spread over tenants, and a fleet's tenants surviving its file."""

from __future__ import annotations

import pytest

from fleetstream.sim import Fleet, FleetDevice, spread


@pytest.mark.parametrize(("n", "parts"), [(0, 1), (1, 1), (4, 3), (1000, 1000), (10_000, 7), (5, 8)])
def test_spread_sums_to_n_and_differs_by_at_most_one(n, parts):
    counts = spread(n, parts)
    assert len(counts) == parts and sum(counts) == n
    assert max(counts) - min(counts) <= 1
    assert counts == sorted(counts, reverse=True)  # the larger shares first: the first tenant has the probes


def test_spread_needs_a_part():
    with pytest.raises(ValueError):
        spread(3, 0)


def test_a_fleet_keeps_each_devices_tenant_and_lists_its_tenants_first_its_own(tmp_path):
    fleet = Fleet("t0", [FleetDevice("d0", "/c/d0"), FleetDevice("d1", "/c/d1", "t1"), FleetDevice("d2", "/c/d2", "t0"),
                         FleetDevice("d3", "/c/d3", "t1")], {"client_id": "x"})
    assert fleet.tenant_ids == ["t0", "t1"]
    assert [fleet.tenant_of(d) for d in fleet.devices] == ["t0", "t1", "t0", "t1"]
    fleet.save(tmp_path / "fleet.json")
    again = Fleet.load(tmp_path / "fleet.json")
    assert again.devices == fleet.devices and again.tenant_ids == ["t0", "t1"] and again.extra == {"client_id": "x"}
