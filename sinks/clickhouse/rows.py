"""Kafka records → ClickHouse rows. Telemetry: one row per metric value; events, alerts and commands: one
row per record. Timestamps stay epoch-ms ints: clickhouse-connect writes ints as DateTime64(3) ticks."""

from __future__ import annotations

COLUMNS = ["tenant_id", "device_id", "metric", "ts", "received_at", "value_num", "value_bool", "value_str", "protocol",
           "retention_days", "kafka_partition", "kafka_offset"]


def telemetry_rows(rec: dict, out: list[list], retention_days: int = 365) -> None:
    ts, rx = rec["event_time"], rec["receive_time"]
    tail = [rec["protocol"], retention_days, rec.get("kafka_partition", 0), rec.get("kafka_offset", 0)]
    for name, v in rec["values"].items():
        if isinstance(v, bool):
            out.append([rec["tenant_id"], rec["device_id"], name, ts, rx, None, int(v), None, *tail])
        elif isinstance(v, float):
            out.append([rec["tenant_id"], rec["device_id"], name, ts, rx, v, None, None, *tail])
        else:
            out.append([rec["tenant_id"], rec["device_id"], name, ts, rx, None, None, v, *tail])


def telemetry_columns(records: list[dict], retention: dict[str, int], default_days: int) -> list[list]:
    """The rows of ``telemetry_rows`` for a whole batch, column by column (``COLUMNS`` order): the
    column-oriented insert skips clickhouse-connect's row-to-column transposition."""
    cols: list[list] = [[] for _ in COLUMNS]
    tenant, device, metric, ts, rx, num, boolean, text, proto, days, part, off = cols
    for rec in records:
        n = len(rec["values"])
        if not n:
            continue
        for name, v in rec["values"].items():
            metric.append(name)
            if isinstance(v, bool):
                num.append(None)
                boolean.append(int(v))
                text.append(None)
            elif isinstance(v, float):
                num.append(v)
                boolean.append(None)
                text.append(None)
            else:
                num.append(None)
                boolean.append(None)
                text.append(v)
        t = rec["tenant_id"]
        tenant += [t] * n
        device += [rec["device_id"]] * n
        ts += [rec["event_time"]] * n
        rx += [rec["receive_time"]] * n
        proto += [rec["protocol"]] * n
        days += [retention.get(t, default_days)] * n
        part += [rec.get("kafka_partition", 0)] * n
        off += [rec.get("kafka_offset", 0)] * n
    return cols


EVENT_COLUMNS = ["tenant_id", "device_id", "time", "event_type", "source", "reason", "details", "kafka_partition",
                 "kafka_offset"]
ALERT_COLUMNS = ["tenant_id", "device_id", "alert_id", "rule_id", "severity", "state", "time", "message",
                 "details_json", "kafka_partition", "kafka_offset"]
COMMAND_COLUMNS = ["tenant_id", "device_id", "command_id", "kind", "name", "status", "time", "params_json",
                   "result_json", "reason", "kafka_topic", "kafka_partition", "kafka_offset"]
REJECTION_COLUMNS = ["tenant_id", "device_id", "time", "source", "reason_code", "reason", "origin", "raw_sample",
                     "raw_size", "kafka_partition", "kafka_offset"]
# how much of a refused payload a tenant sees again: enough to recognise it, never the whole 256 KiB (adr/0180)
REJECTION_SAMPLE_BYTES = 1024


def event_row(r: dict) -> list:
    return [r["tenant_id"], r["device_id"], r["time"], r["event_type"], r["source"], r.get("reason"),
            r.get("details") or {}, r["kafka_partition"], r["kafka_offset"]]


def alert_row(r: dict) -> list:
    return [r["tenant_id"], r["device_id"], r["alert_id"], r["rule_id"], r["severity"], r["state"], r["time"],
            r.get("message", ""), r.get("details_json", "{}"), r["kafka_partition"], r["kafka_offset"]]


def command_row(r: dict) -> list:
    """A command as issued (kind ``command``, status ``ISSUED``) or a device's answer (kind ``ack``)."""
    if "status" in r:
        return [r["tenant_id"], r["device_id"], r["command_id"], "ack", "", r["status"], r["time"], "{}",
                r.get("result_json"), r.get("reason"), r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]]
    return [r["tenant_id"], r["device_id"], r["command_id"], "command", r["name"], "ISSUED", r["created_at"],
            r.get("params_json", "{}"), None, None, r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]]


def rejection_row(r: dict) -> list:
    """A dead letter; no tenant (undecodable input) files under tenant '', no device under device ''."""
    raw = r.get("raw") or b""
    origin = r.get("origin")
    return [r.get("tenant_id") or "", _text(r.get("device_id") or ""), r["time"], r["source"], r["reason_code"],
            _text(r["reason"]), None if origin is None else _text(origin), raw[:REJECTION_SAMPLE_BYTES], len(raw),
            r["kafka_partition"], r["kafka_offset"]]


def _text(s: str) -> str:
    """A reason quotes what a device sent, which may hold a lone surrogate no UTF-8 column takes: escaped."""
    try:
        s.encode()
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode()
