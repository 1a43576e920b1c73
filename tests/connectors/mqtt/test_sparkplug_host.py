"""The Sparkplug host's state machine (adr/0155), fed payloads encoded by a third-party library
(pysparkplug), never by our own encoder: births, aliases, seq gaps and rebirth, deaths, devices and limits."""

from __future__ import annotations

import pysparkplug as sp
import pytest

from connectors.mqtt.sparkplug import payload as pb
from connectors.mqtt.sparkplug.client import _representable
from connectors.mqtt.sparkplug.host import REBIRTH_INTERVAL_MS, SparkplugHost

T, E = "tenant-a", "edge1"
NOW = 1_800_000_000_000


def metric(name, dt, value, alias=None, ts=NOW):
    return sp.Metric(timestamp=ts, name=name, datatype=dt, value=value, alias=alias)


def nbirth(seq=0, bd=0, extra=()):
    return sp.NBirth(timestamp=NOW, seq=seq, metrics=(
        metric("bdSeq", sp.DataType.INT64, bd), metric("Node Control/Rebirth", sp.DataType.BOOLEAN, False),
        metric("temperature", sp.DataType.DOUBLE, 21.5, alias=1), metric("mode", sp.DataType.STRING, "auto", alias=2),
        metric("offset", sp.DataType.INT8, -5, alias=3), *extra)).encode()


def ndata(seq, *metrics):
    return sp.NData(timestamp=NOW, seq=seq, metrics=tuple(metrics)).encode(include_dtypes=False)


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


@pytest.fixture
def host():
    return SparkplugHost(max_devices=2, clock=Clock())


def test_a_birth_brings_the_node_online_and_its_metrics_as_a_reading(host):
    out = host.handle(T, "NBIRTH", E, None, nbirth(), NOW)
    assert out.refused is None and not out.rebirth
    assert [(e.device_id, e.event_type) for e in out.events] == [(E, "ONLINE")]
    (dev, readings, rejected), = out.uplinks
    assert dev == E and not rejected
    assert readings[0].values == {"temperature": 21.5, "mode": "auto", "offset": -5.0}  # no bdSeq, Node Control
    assert readings[0].event_time == NOW


def test_data_by_alias_is_stored_under_the_births_names(host):
    host.handle(T, "NBIRTH", E, None, nbirth(seq=7), NOW)
    out = host.handle(T, "NDATA", E, None, ndata(8, sp.Metric(timestamp=NOW + 1, name=None, alias=1,
                                                               datatype=sp.DataType.DOUBLE, value=30.25)), NOW)
    assert not out.rebirth and out.refused is None
    (_, readings, _), = out.uplinks
    assert readings[0].values == {"temperature": 30.25} and readings[0].event_time == NOW + 1


def test_a_seq_gap_asks_for_a_rebirth_and_still_stores_the_data(host):
    host.handle(T, "NBIRTH", E, None, nbirth(seq=255), NOW)
    assert not host.handle(T, "NDATA", E, None, ndata(0, metric("temperature", sp.DataType.DOUBLE, 1.0)), NOW).rebirth
    out = host.handle(T, "NDATA", E, None, ndata(5, metric("temperature", sp.DataType.DOUBLE, 2.0)), NOW)
    assert out.rebirth and out.uplinks[0][1][0].values == {"temperature": 2.0}
    # a burst of gaps is one request per interval, then the next gap asks again
    assert not host.handle(T, "NDATA", E, None, ndata(9, metric("temperature", sp.DataType.DOUBLE, 3.0)), NOW).rebirth
    host.clock.now += REBIRTH_INTERVAL_MS
    assert host.handle(T, "NDATA", E, None, ndata(20, metric("temperature", sp.DataType.DOUBLE, 4.0)), NOW).rebirth


def test_data_before_any_birth_is_refused_and_triggers_a_rebirth(host):
    out = host.handle(T, "NDATA", E, None, ndata(3, sp.Metric(timestamp=NOW, name=None, alias=1,
                                                              datatype=sp.DataType.DOUBLE, value=1.0)), NOW)
    assert out.refused[1] == "sparkplug_no_birth" and out.rebirth and not out.uplinks


def test_an_unknown_alias_and_unsupported_types_are_dead_lettered_per_metric(host):
    host.handle(T, "NBIRTH", E, None, nbirth(), NOW)
    out = host.handle(T, "NDATA", E, None, ndata(
        1, sp.Metric(timestamp=NOW, name=None, alias=99, datatype=sp.DataType.DOUBLE, value=1.0),
        metric("blob", sp.DataType.BYTES, b"\x00\x01"), metric("temperature", sp.DataType.DOUBLE, 5.0)), NOW)
    (_, readings, rejected), = out.uplinks
    assert readings[0].values == {"temperature": 5.0}
    assert sorted(r.code for r in rejected) == ["sparkplug_unknown_alias", "sparkplug_unsupported_type"]


def test_devices_are_born_mapped_to_edge_dot_device_limited_and_die(host):
    host.handle(T, "NBIRTH", E, None, nbirth(), NOW)
    dbirth = sp.DBirth(timestamp=NOW, seq=1, metrics=(metric("speed", sp.DataType.UINT16, 1200, alias=10),)).encode()
    out = host.handle(T, "DBIRTH", E, "pump1", dbirth, NOW)
    assert [(e.device_id, e.event_type) for e in out.events] == [(f"{E}.pump1", "ONLINE")]
    assert out.uplinks[0][0] == f"{E}.pump1" and out.uplinks[0][1][0].values == {"speed": 1200.0}
    ddata = sp.DData(timestamp=NOW, seq=2, metrics=(sp.Metric(timestamp=NOW, name=None, alias=10,
                                                              datatype=sp.DataType.UINT16, value=7),)).encode()
    assert host.handle(T, "DDATA", E, "pump1", ddata, NOW).uplinks[0][1][0].values == {"speed": 7.0}
    assert host.target(T, f"{E}.pump1").device == "pump1" and host.target(T, f"{E}.pump1").types == {"speed": 6}
    assert host.target(T, E).device is None and host.target(T, "edge9") is None
    host.handle(T, "DBIRTH", E, "pump2", sp.DBirth(timestamp=NOW, seq=3, metrics=()).encode(), NOW)
    out = host.handle(T, "DBIRTH", E, "pump3", sp.DBirth(timestamp=NOW, seq=4, metrics=()).encode(), NOW)
    assert out.refused[1] == "sparkplug_device_limit"
    # DDATA for a device with no birth: refused, rebirth asked
    out = host.handle(T, "DDATA", E, "ghost", sp.DData(timestamp=NOW, seq=5, metrics=()).encode(), NOW)
    assert out.refused[1] == "sparkplug_no_birth"
    out = host.handle(T, "DDEATH", E, "pump1", sp.DDeath(timestamp=NOW, seq=6).encode(), NOW)
    assert [(e.device_id, e.event_type) for e in out.events] == [(f"{E}.pump1", "OFFLINE")]


def test_only_the_current_sessions_death_takes_the_node_and_its_devices_offline(host):
    host.handle(T, "NBIRTH", E, None, nbirth(bd=4), NOW)
    host.handle(T, "DBIRTH", E, "pump1", sp.DBirth(timestamp=NOW, seq=1, metrics=()).encode(), NOW)
    stale = sp.NDeath(timestamp=NOW, bd_seq_metric=metric("bdSeq", sp.DataType.INT64, 3)).encode()
    assert host.handle(T, "NDEATH", E, None, stale, NOW).refused[1] == "sparkplug_stale_death"
    death = sp.NDeath(timestamp=NOW, bd_seq_metric=metric("bdSeq", sp.DataType.INT64, 4)).encode()
    out = host.handle(T, "NDEATH", E, None, death, NOW)
    assert sorted((e.device_id, e.event_type) for e in out.events) == [(E, "OFFLINE"), (f"{E}.pump1", "OFFLINE")]
    assert host.handle(T, "NDATA", E, None, ndata(2, metric("temperature", sp.DataType.DOUBLE, 1.0)), NOW).refused


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x12\x05\x0a\x03abc\x99"])
def test_a_payload_that_is_not_sparkplug_is_refused(host, raw):
    assert host.handle(T, "NBIRTH", E, None, raw, NOW).refused[1] == "sparkplug_invalid_payload"


def test_a_birth_without_bdseq_is_refused(host):
    raw = sp.NBirth(timestamp=NOW, seq=0, metrics=(metric("t", sp.DataType.DOUBLE, 1.0),)).encode()
    assert host.handle(T, "NBIRTH", E, None, raw, NOW).refused[1] == "sparkplug_invalid_birth"


def test_commands_decode_in_the_third_party_library_with_their_datatypes():
    raw = pb.encode_command(NOW, [("Node Control/Rebirth", pb.BOOLEAN, True), ("offset", pb.INT8, -5),
                                  ("big", pb.INT64, -(2**40)), ("setpoint", pb.DOUBLE, 1.5)])
    got = {m.name: m.value for m in sp.NCmd.decode(raw).metrics}
    assert got == {"Node Control/Rebirth": True, "offset": -5, "big": -(2**40), "setpoint": 1.5}


@pytest.mark.parametrize(("dt", "value", "ok"), [(pb.INT16, 12.7, False), (pb.INT16, 12, True),
                                                 (pb.UINT8, 256, False), (pb.UINT8, -1, False),
                                                 (pb.BOOLEAN, 1, False), (pb.BOOLEAN, True, True),
                                                 (pb.STRING, 5, False), (pb.DOUBLE, 2.5, True),
                                                 (pb.INT32, True, False)])
def test_a_value_the_metric_cannot_hold_exactly_is_refused(dt, value, ok):
    assert (_representable(dt, value) is None) is ok
