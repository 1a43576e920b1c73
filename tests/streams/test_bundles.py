"""Validate's output for device-activity (adr/0057), as pure logic: a bundle gives back exactly the keys,
bytes and records written to fleetstream.telemetry, in order, each on its device's partition; refused
readings are in no bundle; an enriched reading is byte for byte what encoding the enriched record gives."""

from __future__ import annotations

import time
from types import SimpleNamespace

from runtime.settings import Settings
from schemas import codec, topics
from schemas.partitioner import partition_for
from streams import bundles
from streams.registry import DeviceInfo
from streams.validate import Validator


def test_pack_readings_round_trip():
    items = [(b"t:d1", b"\x00" * 3, {"event_time": 5, "device_id": "d1", "device_type": "boiler", "tags": [],
                                      "values": {"a": 1.5, "b": True, "c": "x"}}),
             (b"t:" + b"x" * 300, bytes(range(256)) * 40, {"event_time": -1, "device_id": "x" * 300,
                                                           "device_type": None, "tags": ["a", "ü"], "values": {}})]
    got = bundles.readings(bundles.pack([(k, v, {**r, "tenant_id": "t", "protocol": "mqtt"}) for k, v, r in items]), 3)
    assert got == [bundles.Reading(topics.TELEMETRY.name, 3, k, v, r) for k, v, r in items]
    assert all(type(r) is bundles.Reading and r.rec is r[4] for r in got)
    assert bundles.readings(bundles.pack([]), 0) == []


class _Registry:
    caught_up = SimpleNamespace(is_set=lambda: True)

    def __init__(self, devices=None):
        self.devices = devices or {}

    def lookup(self, tenant, device):
        return self.devices.get(device)

    def tenant_published(self, tenant):
        return False

    def tenant_pending(self, tenant):
        return False  # a tenant whose devices predate registry publishing, already looked for

    def tenant_looked_for(self, tenant):
        pass

    def tenant_refused(self, tenant):
        return None

    def type_pending(self, tenant, device_type):
        return False

    def declared_metrics(self, tenant, device_type):
        return None


class _Msg:
    def __init__(self, value):
        self._v = value

    def value(self):
        return self._v


def _reading(dev, i, now, **kw):
    return {"tenant_id": "t", "device_id": dev, "event_time": now + i, "receive_time": now, "protocol": "mqtt",
            "values": {"v": float(i), "ok": True, "s": "x"}, "device_type": None, "tags": [], **kw}


def test_validator_bundles_follow_the_validated_readings_per_partition():
    tc, now = codec("telemetry"), int(time.time() * 1000)
    raws = [tc.encode(_reading(f"d{i % 7}", i, now)) for i in range(2500)]
    raws.insert(10, b"not avro")  # refused: dead letter, not in any bundle
    out = Validator(Settings(), _Registry(), "bundles", 6).process([_Msg(r) for r in raws])
    validated = [(o[1], o[2]) for o in out if o[0] == topics.TELEMETRY.name]
    assert len(validated) == 2500 and sum(o[0] == topics.DEAD_LETTER.name for o in out) == 1
    per_partition: dict[int, list] = {}
    for o in out:
        if o[0] == "bundles":
            per_partition.setdefault(o[3], []).extend(r[2:] for r in bundles.readings(o[2], o[3]))
    for p, items in per_partition.items():
        assert all(partition_for(k, 6) == p for k, _, _ in items)
        assert [(k, v) for k, v, _ in items] == [(k, v) for k, v in validated if partition_for(k, 6) == p]
        assert all({f: tc.decode(v)[f] for f in bundles.FIELDS} == rec for _, v, rec in items)
    assert sum(map(len, per_partition.values())) == 2500
    assert max(len(bundles.readings(o[2], 0)) for o in out if o[0] == "bundles") <= bundles.MAX_READINGS


def test_enrichment_is_the_encoding_of_the_enriched_record():
    tc, now = codec("telemetry"), int(time.time() * 1000)
    reg = _Registry({"a": DeviceInfo("active", "boiler", ("site-a", "floor-2")), "b": DeviceInfo("active", None, ()),
                     "c": DeviceInfo("provisioned", "meter", ()), "d": DeviceInfo("active", None, ("ü-tag",))})
    recs = [_reading(d, i, now) for i, d in enumerate("abcd")]
    recs.append(_reading("a", 9, now, device_type="old", tags=["x"]))  # came enriched already: re-encoded
    out = Validator(Settings(), reg).process([_Msg(tc.encode(r)) for r in recs])
    expected = [("boiler", ["site-a", "floor-2"]), (None, []), ("meter", []), (None, ["ü-tag"]),
                ("boiler", ["site-a", "floor-2"])]
    assert len(out) == 5
    for (topic, _, value), r, (dtype, tags) in zip(out, recs, expected, strict=True):
        assert topic == topics.TELEMETRY.name
        assert value == tc.encode({**r, "device_type": dtype, "tags": tags})
