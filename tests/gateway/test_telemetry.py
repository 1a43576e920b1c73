"""Telemetry queries as a tenant meets them: points a device published over MQTT come back raw (paged),
downsampled (from raw, minute and hour rollups) and as latest values, also across devices picked by tag;
another tenant's token gets nothing; bad ranges, intervals and aggregates get a 400 with a reason."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from schemas.namespace import device_topics
from tests.utils.factories import publish_json, wait_for

N = 180  # one reading a second for three minutes, an hour ago


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def published(stack, factory, gateway):
    t = factory.tenant("tele")
    dev = factory.device(t, device_type="boiler", tags=["site-a"])
    other_dev = factory.device(t, device_type="boiler", tags=["site-b"])
    client = factory.mqtt_client(dev)
    t0 = (int(time.time()) // 3600 - 1) * 3600 * 1000  # start of the previous hour: buckets are predictable
    topic = device_topics(t.tenant_id, dev.device_id)["telemetry"]
    for chunk in range(0, N, 60):
        publish_json(client, topic, [{"ts": t0 + i * 1000, "values": {"temperature": float(i), "state": "on"}}
                                     for i in range(chunk, chunk + 60)])
    publish_json(client, topic, {"ts": t0 + N * 1000, "values": {"door_open": True}})
    client.disconnect()
    token = t.token(gateway)
    h = {"Authorization": f"Bearer {token}"}
    wait_for(lambda: len(gateway.get(f"/v1/devices/{dev.device_id}/telemetry",
                                     params={"metric": "temperature", "from": _iso(t0), "limit": 1000},
                                     headers=h).json().get("points", [])) == N, timeout=60, what="all points stored")
    return {"tenant": t, "dev": dev, "other_dev": other_dev, "t0": t0, "h": h}


def test_raw_points_page_with_a_cursor_and_cover_every_reading(published, gateway):
    p, dev = published, published["dev"]
    url = f"/v1/devices/{dev.device_id}/telemetry"
    seen, cursor, pages = [], None, 0
    while True:
        params = {"metric": "temperature", "from": _iso(p["t0"]), "limit": 50}
        if cursor:
            params["cursor"] = cursor
        body = gateway.get(url, params=params, headers=p["h"]).json()
        seen += [pt["value"] for pt in body["points"]]
        pages += 1
        cursor = body.get("next_cursor")
        if not cursor:
            break
    assert seen == [float(i) for i in range(N)]
    assert pages == 4  # 50 + 50 + 50 + 30


def test_downsampled_series_come_from_the_rollup_that_fits_the_interval(published, gateway):
    p, dev = published, published["dev"]
    url = f"/v1/devices/{dev.device_id}/telemetry"
    base = {"metric": "temperature", "from": _iso(p["t0"]), "to": _iso(p["t0"] + 3600_000)}
    expect = {"avg": [29.5, 89.5, 149.5], "min": [0.0, 60.0, 120.0], "max": [59.0, 119.0, 179.0],
              "sum": [1770.0, 5370.0, 8970.0], "count": [60, 60, 60], "last": [59.0, 119.0, 179.0]}
    for agg, values in expect.items():
        body = gateway.get(url, params={**base, "interval": "1m", "agg": agg}, headers=p["h"]).json()
        assert body["source"] == "telemetry_1m"
        assert [pt["value"] for pt in body["points"]] == values, agg
        assert body["points"][0]["ts"].startswith(_iso(p["t0"])[:19])
    hourly = gateway.get(url, params={**base, "interval": "1h", "agg": "count"}, headers=p["h"]).json()
    assert hourly["source"] == "telemetry_1h" and [pt["value"] for pt in hourly["points"]] == [N]
    fine = gateway.get(url, params={**base, "interval": "30s", "agg": "count"}, headers=p["h"]).json()
    assert fine["source"] == "telemetry" and [pt["value"] for pt in fine["points"]] == [30] * 6


def test_latest_gives_the_last_value_of_every_metric(published, gateway):
    p, dev = published, published["dev"]
    body = wait_for(lambda: gateway.get(f"/v1/devices/{dev.device_id}/telemetry/latest", headers=p["h"]).json(),
                    what="latest values")
    assert {m: v["value"] for m, v in body["values"].items()} == {"temperature": float(N - 1), "state": "on",
                                                                   "door_open": True}
    assert body["values"]["door_open"]["ts"].startswith(_iso(p["t0"] + N * 1000)[:19])


def test_tenant_wide_reads_pick_devices_by_tag_and_type(published, gateway):
    p, dev = published, published["dev"]
    by_tag = gateway.get("/v1/telemetry/latest", params={"tag": "site-a"}, headers=p["h"]).json()
    assert [d["device_id"] for d in by_tag["devices"]] == [dev.device_id]
    assert by_tag["devices"][0]["values"]["temperature"]["value"] == float(N - 1)
    by_type = gateway.get("/v1/telemetry/series", headers=p["h"], params={
        "device_type": "boiler", "metric": "temperature", "interval": "1h", "agg": "max",
        "from": _iso(p["t0"]), "to": _iso(p["t0"] + 3600_000)}).json()
    series = {d["device_id"]: [pt["value"] for pt in d["points"]] for d in by_type["devices"]}
    assert series == {dev.device_id: [float(N - 1)], p["other_dev"].device_id: []}
    r = gateway.get("/v1/telemetry/latest", headers=p["h"])
    assert r.status_code == 400 and r.json()["error"]["code"] == "selector_required"


def test_another_tenants_token_gets_nothing(published, factory, gateway):
    dev = published["dev"]
    stranger = factory.tenant("stranger")
    h = {"Authorization": f"Bearer {stranger.token(gateway)}"}
    for path, params in ((f"/v1/devices/{dev.device_id}/telemetry", {"metric": "temperature"}),
                         (f"/v1/devices/{dev.device_id}/telemetry", {"metric": "temperature", "interval": "1m"}),
                         (f"/v1/devices/{dev.device_id}/telemetry/latest", {})):
        r = gateway.get(path, params=params, headers=h)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
    assert gateway.get("/v1/telemetry/latest", params={"tag": "site-a"}, headers=h).json() == {"devices": []}


@pytest.mark.parametrize("params,code", [
    ({"interval": "7x"}, "bad_interval"),
    ({"interval": "0m"}, "bad_interval"),
    ({"interval": "1m", "agg": "median"}, "bad_agg"),
    ({"interval": "1s", "from": "2020-01-01T00:00:00Z"}, "too_many_buckets"),
    ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "bad_range"),
    ({"from": "2020-01-01T00:00:00Z", "to": "2022-01-01T00:00:00Z"}, "bad_range"),
    ({"cursor": "not-a-cursor"}, "bad_cursor"),
])
def test_bad_query_parameters_get_a_400_with_a_reason(published, gateway, params, code):
    dev = published["dev"]
    r = gateway.get(f"/v1/devices/{dev.device_id}/telemetry", params={"metric": "temperature", **params},
                    headers=published["h"])
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


def test_a_reading_sent_again_counts_once_in_every_aggregate(published, factory, gateway):
    """A device re-sending readings (as after a lost PUBACK) makes new Kafka records of the same points:
    one row each in raw, so every aggregate over minutes and hours, per device and across devices, stays
    what it was (adr/0114)."""
    p, dev = published, published["dev"]
    client = factory.mqtt_client(dev)
    topic = device_topics(p["tenant"].tenant_id, dev.device_id)["telemetry"]
    for _ in range(3):
        publish_json(client, topic, [{"ts": p["t0"] + i * 1000, "values": {"temperature": float(i)}} for i in range(5)])
    publish_json(client, topic, {"ts": p["t0"] + N * 1000, "values": {"marker": 1.0}})  # after them, same partition
    client.disconnect()
    url = f"/v1/devices/{dev.device_id}/telemetry"
    wait_for(lambda: "marker" in gateway.get(f"{url}/latest", headers=p["h"]).json()["values"], timeout=60,
             what="the re-sent readings to be stored")
    base = {"metric": "temperature", "from": _iso(p["t0"]), "to": _iso(p["t0"] + 3600_000)}
    expect = {"avg": [29.5, 89.5, 149.5], "sum": [1770.0, 5370.0, 8970.0], "count": [60, 60, 60]}
    for agg, values in expect.items():
        body = gateway.get(url, params={**base, "interval": "1m", "agg": agg}, headers=p["h"]).json()
        assert [pt["value"] for pt in body["points"]] == values, agg
    hourly = gateway.get(url, params={**base, "interval": "1h", "agg": "count"}, headers=p["h"]).json()
    assert [pt["value"] for pt in hourly["points"]] == [N]
    fleet = gateway.get("/v1/telemetry/series", headers=p["h"], params={
        "tag": "site-a", "metric": "temperature", "interval": "1h", "agg": "sum", **base}).json()
    assert [pt["value"] for pt in fleet["devices"][0]["points"]] == [float(sum(range(N)))]
