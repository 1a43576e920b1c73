"""The tenant-scoped read layer: every query the gateway runs on ClickHouse goes through here, and each
method requires the tenant (in embedded mode there are no row policies to fall back on; adr/0007)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .client import ClickHouse


@dataclass(frozen=True)
class Point:
    ts: dt.datetime
    value: float | bool | str | None


class TelemetryStore:
    def __init__(self, ch: ClickHouse):
        self.ch = ch

    def raw_points(self, *, tenant_id: str, device_id: str, metric: str, start: dt.datetime, end: dt.datetime,
                   limit: int, after: dt.datetime | None = None) -> list[Point]:
        if not tenant_id:
            raise ValueError("tenant_id is required")
        rows = self.ch.query_rows(
            f"""SELECT toUnixTimestamp64Milli(ts), value_num, value_bool, value_str FROM {self.ch.database}.telemetry FINAL
                WHERE tenant_id = {{t:String}} AND device_id = {{d:String}} AND metric = {{m:String}}
                  AND ts >= {{start:DateTime64(3)}} AND ts < {{end:DateTime64(3)}}
                  AND ts > {{after:DateTime64(3)}}
                ORDER BY ts LIMIT {{limit:UInt32}}""",
            {"t": tenant_id, "d": device_id, "m": metric, "start": start, "end": end,
             "after": after or dt.datetime(1970, 1, 1, tzinfo=dt.UTC), "limit": limit})
        return [Point(_utc(r[0]), _value(r[1], r[2], r[3])) for r in rows]


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _value(num, boolean, text):
    if num is not None:
        return num
    if boolean is not None:
        return bool(boolean)
    return text
