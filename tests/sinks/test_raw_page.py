"""A REST page's points with their times written by ClickHouse (adr/0193) are byte for byte what the API wrote
from ``raw_points`` before: the same JSON for whole seconds and milliseconds, every value type, NaN, and the
same cursor. Real chdb through the sink's write path; no Kafka."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from gateway.api.routes.telemetry import _encode_cursor
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.schema import create_all
from sinks.clickhouse.sink import ClickHouseTelemetrySink
from sinks.clickhouse.store import TelemetryStore

T0 = 1_796_000_000_000  # 2026-11-30T00:53:20Z
# whole seconds, every digit place of the milliseconds, the first and last millisecond of a second
OFFSETS = [0, 1, 10, 100, 123, 999, 1000, 1500, 61_001, 86_400_000 + 7]
VALUES = [20.0, 1e16, 1.5e-7, 0.1 + 0.2, -0.0, float("nan"), 1e300, 42.5, 7.0, -3.25]


def _rec(ts: int, **values) -> dict:
    return {"tenant_id": "t-page", "device_id": "d-1", "event_time": ts, "receive_time": ts + 1, "protocol": "mqtt",
            "values": values, "device_type": None, "tags": []}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    ch = ClickHouse(f"chdb://{tmp_path_factory.mktemp('ch-page')}", database="raw_page")
    create_all(ch, "raw_page")
    sink = ClickHouseTelemetrySink(ch)
    sink.write([_rec(T0 + off, v=v) for off, v in zip(OFFSETS, VALUES, strict=True)])
    sink.write([_rec(T0 + 2, v=True), _rec(T0 + 3, v="on"), _rec(T0 + 4, v=False), _rec(T0 + 5, v="")])
    yield TelemetryStore(ch)
    ch.close()


def _old_answer(points) -> bytes:  # what the route wrote from raw_points (adr/0185, adr/0188)
    return orjson.dumps([{"ts": ts, "value": value} for ts, value in points], option=orjson.OPT_UTC_Z)


@pytest.mark.parametrize("limit,after", [(100, None), (3, None), (4, T0 + 3), (100, T0 + 1000)])
def test_a_page_is_what_the_answer_was_before(store, limit, after):
    q = {"tenant_id": "t-page", "device_id": "d-1", "metric": "v", "limit": limit,
         "start": dt.datetime.fromtimestamp(T0 / 1000, dt.UTC), "end": dt.datetime(2100, 1, 1, tzinfo=dt.UTC),
         "after": None if after is None else dt.datetime.fromtimestamp(after / 1000, dt.UTC)}
    old, new = store.raw_points(**q), store.raw_page(**q)
    stored = [o for o in [*OFFSETS, 2, 3, 4, 5] if after is None or T0 + o > after]
    assert len(new) == len(old) == min(limit, len(stored)) > 0
    assert orjson.dumps(new, option=orjson.OPT_UTC_Z) == _old_answer(old)
    for o, n in zip(old, new, strict=True):
        assert _encode_cursor(n["ts"]).encode() == _cursor_before(o.ts)


def _cursor_before(ts: dt.datetime) -> bytes:
    import base64

    return base64.urlsafe_b64encode(ts.isoformat().encode())


def test_a_page_of_another_tenant_is_empty(store):
    q = {"device_id": "d-1", "metric": "v", "limit": 100, "start": dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
         "end": dt.datetime(2100, 1, 1, tzinfo=dt.UTC)}
    assert store.raw_page(tenant_id="t-other", **q) == []
    with pytest.raises(ValueError):
        store.raw_page(tenant_id="", **q)
