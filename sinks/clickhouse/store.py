"""The tenant-scoped read layer: every query the gateway runs on ClickHouse goes through here, and each
method requires the tenant (in embedded mode there are no row policies to fall back on; adr/0007, 0062).

Downsampled reads come from the per-minute or per-hour rollups whenever the interval is a whole number
of their grain, so a 30-day range reads at most 720 hourly rows per metric instead of the raw points. The
rollups are recomputed from deduplicated raw rows after the fact (adr/0114), so a read takes every bucket
that holds raw rows not yet rolled up (at or beyond their partition's ``done_below``) from raw instead:
answers always equal the same aggregate over ``telemetry FINAL``.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from dataclasses import dataclass
from typing import NamedTuple

from .client import ClickHouse
from .isolation import query_settings
from .latest import LatestCache

AGGS = ("avg", "min", "max", "sum", "count", "last")

# the same aggregate over raw rows and over partial aggregates (rollup rows, or raw rows of one minute)
_RAW_AGG = {"avg": "avg(value_num)", "min": "min(value_num)", "max": "max(value_num)", "sum": "sum(value_num)",
            "count": "count(value_num)", "last": "argMax(value_num, ts)"}
_PARTIAL_AGG = {"avg": "sum(sum_v) / sum(count_v)", "min": "min(min_v)", "max": "max(max_v)", "sum": "sum(sum_v)",
                "count": "sum(count_v)", "last": "argMax(last_v, last_ts)"}
_GRAINS = ((3600, "telemetry_1h"), (60, "telemetry_1m"))
_PARTIAL_COLS = "sum_v, count_v, min_v, max_v, last_v, last_ts"

# The minutes in which a selection holds raw rows not yet rolled up: at or beyond their partition's done_below
# (a partition without a progress row counts as not rolled up at all). The bound on the lowest done_below
# lets the minmax index on kafka_offset skip every granule that is all rolled up, which after a refresh is
# all but the newest parts. Every partition the sink was assigned has a progress row (rollups.reset).
_PENDING = """
WITH (SELECT (groupArray(kafka_partition), groupArray(done))
      FROM (SELECT kafka_partition, argMax(done_below, updated_at) AS done FROM {db}.rollup_progress
            GROUP BY kafka_partition)) AS progress
SELECT DISTINCT toUnixTimestamp(toStartOfMinute(ts)) FROM {db}.telemetry
WHERE {where} AND kafka_offset >= if(empty(progress.2), 0, arrayMin(progress.2))
  AND kafka_offset >= transform(kafka_partition, progress.1, progress.2, toUInt64(0))"""

_SELECTION = """tenant_id = {t:String} AND device_id IN {d:Array(String)} AND metric = {m:String}"""
_RAW_RANGE = """ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)}"""
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Reads of one series in key order (a page, latest values) on one thread each: ClickHouse's default of a
# thread per core costs ~20-30 % more CPU per such query, and concurrent requests already use the cores
_POINT_READ = {"max_threads": 1}
# A point's time as the API's JSON writes a UTC datetime (orjson, OPT_UTC_Z; what ``datetime.isoformat`` gives
# with "Z" for "+00:00"): seconds, then microseconds only when they are not zero, then "Z" (adr/0193)
TS_TEXT = ("concat(formatDateTime(ts, '%Y-%m-%dT%H:%i:%S', 'UTC'), if(toUnixTimestamp64Milli(ts) % 1000 = 0, '', "
           "concat('.', leftPad(toString(toUnixTimestamp64Milli(ts) % 1000), 3, '0'), '000')), 'Z')")


class Point(NamedTuple):
    """A tuple, not a dataclass: a page builds a thousand of them (adr/0188)."""
    ts: dt.datetime
    value: float | bool | str | None


@dataclass(frozen=True)
class Latest:
    device_id: str
    metric: str
    ts: dt.datetime
    value: float | bool | str | None


@dataclass(frozen=True)
class Series:
    points: list[Point]
    source: str  # the table the buckets came from: telemetry, telemetry_1m, telemetry_1h


def _tenant(tenant_id: str) -> str:
    if not tenant_id:
        raise ValueError("tenant_id is required")
    return tenant_id


def align(start: dt.datetime, end: dt.datetime, interval_s: int) -> tuple[dt.datetime, dt.datetime]:
    """Widens [start, end) to whole intervals counted from the epoch, so raw and rollup reads agree."""
    a = math.floor((start - _EPOCH).total_seconds() / interval_s) * interval_s
    b = math.ceil((end - _EPOCH).total_seconds() / interval_s) * interval_s
    return _EPOCH + dt.timedelta(seconds=a), _EPOCH + dt.timedelta(seconds=b)


class TelemetryStore:
    """:param latest_cache: latest values in memory; only for the process that hosts the telemetry sink and
        tells the cache what it wrote (``latest.LatestCache``, adr/0185)."""

    def __init__(self, ch: ClickHouse, *, latest_cache: LatestCache | None = None):
        self.ch = ch
        self.db = ch.database
        self.latest_cache = latest_cache

    def _q(self, sql: str, params: dict, settings: dict | None = None) -> list[tuple]:
        """Every tenant query: the tenant is a parameter of the SQL and, with a server, of the row policy."""
        tenant = query_settings(self.ch.embedded, _tenant(params["t"]))
        return self.ch.query_rows(sql, params, settings={**(settings or {}), **(tenant or {})} or None)

    def _raw(self, ts: str, tenant_id: str, device_id: str, metric: str, start: dt.datetime, end: dt.datetime,
             limit: int, after: dt.datetime | None) -> list[tuple]:
        return self._q(
            f"""SELECT {ts}, value_num, value_bool, value_str FROM {self.db}.telemetry FINAL
                WHERE tenant_id = {{t:String}} AND device_id = {{d:String}} AND metric = {{m:String}}
                  AND ts >= {{start:DateTime64(3)}} AND ts < {{end:DateTime64(3)}}
                  AND ts > {{after:DateTime64(3)}}
                ORDER BY ts LIMIT {{limit:UInt32}}""",
            {"t": _tenant(tenant_id), "d": device_id, "m": metric, "start": start, "end": end,
             "after": after or _EPOCH, "limit": limit}, _POINT_READ)

    def raw_points(self, *, tenant_id: str, device_id: str, metric: str, start: dt.datetime, end: dt.datetime,
                   limit: int, after: dt.datetime | None = None) -> list[Point]:
        rows = self._raw("toUnixTimestamp64Milli(ts)", tenant_id, device_id, metric, start, end, limit, after)
        fromtimestamp, utc = dt.datetime.fromtimestamp, dt.UTC
        return [Point(fromtimestamp(ms / 1000, utc), num if num is not None else _value(num, boolean, text))
                for ms, num, boolean, text in rows]

    def raw_page(self, *, tenant_id: str, device_id: str, metric: str, start: dt.datetime, end: dt.datetime,
                 limit: int, after: dt.datetime | None = None) -> list[dict]:
        """``raw_points`` as the REST page's points: ``{"ts": text, "value": v}`` with the time written by
        ClickHouse as the API writes a UTC datetime (``TS_TEXT``), so a page builds no datetime objects."""
        rows = self._raw(TS_TEXT, tenant_id, device_id, metric, start, end, limit, after)
        return [{"ts": ts, "value": num if num is not None else _value(num, boolean, text)}
                for ts, num, boolean, text in rows]

    def downsampled(self, *, tenant_id: str, device_ids: list[str], metric: str, start: dt.datetime,
                    end: dt.datetime, interval_s: int, agg: str) -> dict[str, Series]:
        """Buckets of ``interval_s`` per device; ``start``/``end`` must already be aligned (``align``)."""
        if agg not in AGGS:
            raise ValueError(f"agg must be one of {', '.join(AGGS)}")
        source = next((table for grain, table in _GRAINS if interval_s % grain == 0), "telemetry")
        params = {"t": _tenant(tenant_id), "d": list(device_ids), "m": metric, "start": start, "end": end,
                  "iv": interval_s}
        if source == "telemetry":
            sql = f"""SELECT device_id, toUnixTimestamp(toStartOfInterval(ts, INTERVAL {{iv:UInt32}} SECOND)) AS b,
                             {_RAW_AGG[agg]}
                      FROM {self.db}.telemetry FINAL
                      WHERE {_SELECTION} AND {_RAW_RANGE} AND value_num IS NOT NULL
                      GROUP BY device_id, b ORDER BY device_id, b"""
        else:
            bucket = "toUnixTimestamp(toStartOfInterval({col}, INTERVAL {{iv:UInt32}} SECOND))"
            sql = self._rolled_up_sql(source, bucket, _PARTIAL_AGG[agg], params) + " ORDER BY device_id, b"
        rows = self._q(sql, params)
        out = {d: Series([], source) for d in device_ids}
        for device_id, b, v in rows:
            out[device_id].points.append(Point(_utc(b * 1000), None if v is None or _nan(v) else v))
        return out

    def _rolled_up_sql(self, source: str, bucket: str, final: str, params: dict) -> str:
        """Per device and bucket (``bucket`` formats ``col``), the aggregate ``final`` over partial
        aggregates: rollup rows of the grain ``source`` outside pending hours/minutes, minute rows of the
        pending hours outside pending minutes, raw rows of the pending minutes. Reads the pending minutes
        first (one small query) into ``params``: usually there are none, and the answer is one read of one
        rollup table. A minute pending for one device is read from raw for every selected device: raw is
        right for any bucket, and plain time conditions use the index where per-device sets cost more."""
        db = self.db
        pending = sorted(int(m) for (m,) in self._q(_PENDING.format(db=db, where=f"{_SELECTION} AND {_RAW_RANGE}"),
                                                    params))
        params["pm"], params["ph"] = pending, sorted({m - m % 3600 for m in pending})

        def rollup(table: str, where: str = "") -> str:
            return (f"SELECT device_id, {bucket.format(col='bucket')} AS b, {_PARTIAL_COLS} FROM {db}.{table} FINAL "
                    f"WHERE {_SELECTION} AND bucket >= {{start:DateTime64(3)}} AND bucket < {{end:DateTime64(3)}} "
                    f"AND count_v > 0{where}")

        minutes_done = " AND toUnixTimestamp(bucket) NOT IN {pm:Array(UInt32)}"
        if source == "telemetry_1h":
            parts = [rollup("telemetry_1h", " AND toUnixTimestamp(bucket) NOT IN {ph:Array(UInt32)}" if pending else "")]
            if pending:
                parts.append(rollup("telemetry_1m", minutes_done
                                    + " AND toUnixTimestamp(toStartOfHour(bucket)) IN {ph:Array(UInt32)}"))
        else:
            parts = [rollup("telemetry_1m", minutes_done if pending else "")]
        if pending:
            parts.append(f"""SELECT device_id, {bucket.format(col="ts")} AS b, sum(value_num) AS sum_v,
                       count(value_num) AS count_v, min(value_num) AS min_v, max(value_num) AS max_v,
                       argMax(value_num, ts) AS last_v, max(ts) AS last_ts
                FROM {db}.telemetry FINAL
                WHERE {_SELECTION} AND {_RAW_RANGE} AND value_num IS NOT NULL
                  AND toUnixTimestamp(toStartOfMinute(ts)) IN {{pm:Array(UInt32)}}
                GROUP BY device_id, b""")
        return (f"SELECT device_id, b, {final} FROM ({' UNION ALL '.join(parts)})\n"
                "GROUP BY device_id, b HAVING sum(count_v) > 0")

    def latest(self, *, tenant_id: str, device_ids: list[str], metrics: list[str] | None = None) -> list[Latest]:
        """The last value (by event time) of each metric of the given devices, ordered by device and metric."""
        cache = self.latest_cache
        if cache is None:
            return self._latest(tenant_id, device_ids, metrics)
        tenant_id = _tenant(tenant_id)
        out: list[Latest] = []
        missing = []
        for d in dict.fromkeys(device_ids):
            values = cache.get((tenant_id, d))
            if values is None:
                missing.append(d)
            else:
                out += values
        if missing:
            since = cache.round()
            read: dict[str, list[Latest]] = {d: [] for d in missing}
            for x in self._latest(tenant_id, missing, None):  # every metric: the entry serves any later filter
                read[x.device_id].append(x)
            for d, values in read.items():
                cache.offer((tenant_id, d), tuple(values), since)
                out += values
        if metrics:
            wanted = set(metrics)
            out = [x for x in out if x.metric in wanted]
        return sorted(out, key=lambda x: (x.device_id, x.metric))

    def cached_latest(self, *, tenant_id: str, device_id: str) -> list[Latest] | None:
        """``latest`` of one device when the cache holds it (memory only, safe on an event loop), else None."""
        if self.latest_cache is None:
            return None
        values = self.latest_cache.get((_tenant(tenant_id), device_id))
        return None if values is None else sorted(values, key=lambda x: x.metric)

    def _latest(self, tenant_id: str, device_ids: list[str], metrics: list[str] | None) -> list[Latest]:
        rows = self._q(
            f"""SELECT device_id, metric, toUnixTimestamp64Milli(max(last_ts)), argMaxMerge(last_v)
                FROM {self.db}.telemetry_latest
                WHERE tenant_id = {{t:String}} AND device_id IN {{d:Array(String)}}
                  AND (length({{m:Array(String)}}) = 0 OR has({{m:Array(String)}}, metric))
                GROUP BY device_id, metric ORDER BY device_id, metric""",
            {"t": _tenant(tenant_id), "d": list(device_ids), "m": list(metrics or [])}, _POINT_READ)
        return [Latest(r[0], r[1], _utc(r[2]), _value(*r[3])) for r in rows]

    def count_points(self, *, tenant_id: str, device_id: str, metric: str) -> tuple[int, int, int]:
        """(numeric points under FINAL, points as the minute rollups count them, as the hour rollups do),
        all time: equal when every point is stored exactly once. Rollups answer as ``downsampled`` does."""
        p = {"t": _tenant(tenant_id), "d": [device_id], "m": metric, "start": _EPOCH,
             "end": dt.datetime(2106, 1, 1, tzinfo=dt.UTC)}
        raw = self._q(f"""SELECT count() FROM {self.db}.telemetry FINAL WHERE {_SELECTION}
                          AND value_num IS NOT NULL""", p)[0][0]
        counts = [self._q(self._rolled_up_sql(table, "0", "sum(count_v)", p), p) for table in ("telemetry_1m", "telemetry_1h")]
        return int(raw), *(int(c[0][2]) if c else 0 for c in counts)

    def set_retention(self, *, tenant_id: str, days: int) -> None:
        """Applies to rows written from now on (and their rollups); existing rows keep the TTL they had."""
        self.ch.insert("tenant_retention", [[_tenant(tenant_id), days, dt.datetime.now(dt.UTC)]],
                       ["tenant_id", "retention_days", "updated_at"])

    def retention(self, *, tenant_id: str) -> int | None:
        rows = self._q(
            f"SELECT argMax(retention_days, updated_at) FROM {self.db}.tenant_retention "
            "WHERE tenant_id = {t:String} GROUP BY tenant_id", {"t": _tenant(tenant_id)})
        return int(rows[0][0]) if rows else None

    def alerts(self, *, tenant_id: str, device_id: str, limit: int = 100) -> list[dict]:
        return self._records("alerts", ["alert_id", "rule_id", "severity", "state", "message", "details_json"],
                             tenant_id, device_id, limit)

    def device_events(self, *, tenant_id: str, device_id: str, limit: int = 100) -> list[dict]:
        return self._records("device_events", ["event_type", "source", "reason"], tenant_id, device_id, limit)

    def commands(self, *, tenant_id: str, device_id: str, limit: int = 100) -> list[dict]:
        return self._records("command_history", ["command_id", "kind", "name", "status", "params_json",
                                                 "result_json", "reason"], tenant_id, device_id, limit)

    def rejections(self, *, tenant_id: str, device_id: str | None = None, reason_code: str | None = None,
                   limit: int = 100, before: tuple[int, int, int] | None = None) -> list[dict]:
        """Refused input, newest first; ``before``: the (time ms, partition, offset) of the last row of the
        previous page (keyset pagination over the table's own order, adr/0180)."""
        where = ["tenant_id = {t:String}"]
        params: dict = {"t": _tenant(tenant_id), "n": limit}
        if device_id is not None:
            where.append("device_id = {d:String}")
            params["d"] = device_id
        if reason_code is not None:
            where.append("reason_code = {r:String}")
            params["r"] = reason_code
        if before is not None:
            where.append("(toUnixTimestamp64Milli(time), kafka_partition, kafka_offset) < "
                         "({bt:Int64}, {bp:UInt16}, {bo:UInt64})")
            params.update(bt=before[0], bp=before[1], bo=before[2])
        rows = self._q(
            f"""SELECT toUnixTimestamp64Milli(time), device_id, source, reason_code, reason, origin, base64Encode(raw_sample),
                       raw_size, kafka_partition, kafka_offset
                FROM {self.db}.rejections FINAL WHERE {' AND '.join(where)}
                ORDER BY time DESC, kafka_partition DESC, kafka_offset DESC LIMIT {{n:UInt32}}""", params)
        cols = ("time_ms", "device_id", "source", "reason_code", "reason", "origin", "raw_sample", "raw_size",
                "kafka_partition", "kafka_offset")
        out = [dict(zip(cols, r, strict=True)) for r in rows]
        for r in out:  # base64 on the way out: a sample is bytes and need not be UTF-8
            r["raw_sample"] = base64.b64decode(r["raw_sample"])
        return out

    def rejection_counts(self, *, tenant_id: str, device_id: str | None = None) -> dict[str, int]:
        """Refusals per reason code over what the table keeps (14 days)."""
        params: dict = {"t": _tenant(tenant_id)}
        where = "tenant_id = {t:String}"
        if device_id is not None:
            where += " AND device_id = {d:String}"
            params["d"] = device_id
        rows = self._q(f"SELECT reason_code, count() FROM {self.db}.rejections FINAL WHERE {where} "
                       "GROUP BY reason_code ORDER BY reason_code", params)
        return {code: int(n) for code, n in rows}

    def _records(self, table: str, cols: list[str], tenant_id: str, device_id: str, limit: int) -> list[dict]:
        rows = self._q(
            f"""SELECT toUnixTimestamp64Milli(time), {', '.join(cols)} FROM {self.db}.{table} FINAL
                WHERE tenant_id = {{t:String}} AND device_id = {{d:String}}
                ORDER BY time DESC LIMIT {{n:UInt32}}""", {"t": _tenant(tenant_id), "d": device_id, "n": limit})
        return [{"time": _utc(r[0]), **dict(zip(cols, r[1:], strict=True))} for r in rows]


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _value(num, boolean, text):
    if num is not None:
        return num
    if boolean is not None:
        return bool(boolean)
    return text
