"""Telemetry records → ClickHouse rows: one row per metric value."""

from __future__ import annotations

COLUMNS = ["tenant_id", "device_id", "metric", "ts", "received_at", "value_num", "value_bool", "value_str", "protocol"]


def telemetry_rows(rec: dict, out: list[list]) -> None:
    ts, rx = rec["event_time"], rec["receive_time"]
    # timestamps stay epoch-ms ints: clickhouse-connect writes ints as DateTime64(3) ticks as they are
    for name, v in rec["values"].items():
        if isinstance(v, bool):
            out.append([rec["tenant_id"], rec["device_id"], name, ts, rx, None, int(v), None, rec["protocol"]])
        elif isinstance(v, float):
            out.append([rec["tenant_id"], rec["device_id"], name, ts, rx, v, None, None, rec["protocol"]])
        else:
            out.append([rec["tenant_id"], rec["device_id"], name, ts, rx, None, None, v, rec["protocol"]])
