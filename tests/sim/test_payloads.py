"""The simulator's payload shapes are canonical JSON the connector accepts, and each says how many points a
reading carries (the benchmark counts points from it: 1, 3 or 30)."""

from __future__ import annotations

import json

import pytest

from fleetstream.sim.payloads import PAYLOADS, payload, points_per_message


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_every_payload_is_a_timestamped_reading_of_its_declared_width(name):
    for seq in (1, 97, 12_345):
        body = json.loads(payload(name)(1_700_000_000_000 + seq, seq))
        assert body["ts"] == 1_700_000_000_000 + seq
        assert len(body["values"]) == points_per_message(name)
        assert all(isinstance(v, (int, float, bool)) for v in body["values"].values())


def test_the_widths_span_one_to_thirty_points():
    assert {points_per_message(n) for n in PAYLOADS} == {1, 3, 30}
