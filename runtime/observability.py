"""Metrics, structured logs and trace ids for every fleetstream process (adr/0094).

- **Metrics**: Prometheus series in the process-wide default registry. The gateway serves them at
  ``/metrics`` on its own port (``instrument_fastapi``); the other roles (streams, sink, connectors) call
  ``serve_metrics(settings, role)``, which opens a small HTTP server on ``settings.metrics_port`` plus a
  fixed per-role offset (so the all-in-one local stack never collides; in Kubernetes each pod uses the
  same formula and the chart declares the resulting port).
- **Cardinality**: the ``tenant`` label is capped (``TENANT_LABEL_CAP`` distinct tenants per process,
  default 200); tenants beyond the cap are counted under ``tenant="_other"``. Device ids are never labels.
- **Logs**: ``configure_logging(role, fmt="json")`` writes one JSON object per line with ``tenant_id``,
  ``device_id`` and ``trace_id`` taken from ``extra=`` or from the context variables set by ``log_context``.
- **Traces**: W3C ``traceparent`` ids are accepted or created by the gateway middleware and echoed in
  the response; OpenTelemetry export is *not* wired (see adr/0094 for what is and is not done).

Example::

    from runtime import observability as obs
    obs.record_ingest("mqtt", tenant_id)
    with obs.SINK_BATCH_SECONDS.labels(sink="clickhouse").time():
        write(batch)
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import random
import re
import threading
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, Info, generate_latest

__all__ = [
    "INGEST_MESSAGES", "INGEST_REJECTED", "KAFKA_CONSUMER_LAG", "SINK_BATCH_SECONDS", "SINK_RECORDS",
    "RULE_EVALUATIONS", "COMMAND_OUTCOMES", "WEBSOCKET_CLIENTS", "HTTP_REQUESTS", "HTTP_REQUEST_SECONDS",
    "KAFKA_DELIVERY_FAILURES", "E2E_LATENCY_SECONDS", "ROLE_PORT_OFFSETS", "TenantLabels", "record_ingest",
    "record_rejected", "record_rejection", "REJECTIONS", "record_delivery", "observe_sink_batch", "consumer_stats_config",
    "instrument_fastapi", "serve_metrics", "metrics_port_for", "configure_logging", "JsonFormatter",
    "log_context", "new_traceparent", "parse_traceparent", "current_trace_id",
]

TENANT_LABEL_CAP = int(os.environ.get("FLEETSTREAM_METRICS_TENANT_CAP", "200"))
OTHER_TENANT = "_other"

BUILD = Info("fleetstream_build", "fleetstream build and process role")
INGEST_MESSAGES = Counter("fleetstream_ingest_messages_total",
                          "readings accepted by a connector and handed to Kafka", ["protocol", "tenant"])
INGEST_REJECTED = Counter("fleetstream_ingest_rejected_total",
                          "input refused by a connector (dead-lettered), by reason code", ["protocol", "reason"])
REJECTIONS = Counter("fleetstream_rejections_total",
                     "dead letters stored for tenants to read (every stage's refusals), by reason code",
                     ["tenant", "source", "reason"])
KAFKA_DELIVERY_FAILURES = Counter("fleetstream_kafka_delivery_failures_total",
                                  "records a connector could not write to Kafka (ingest SLO errors)", ["protocol"])
E2E_LATENCY_SECONDS = Histogram("fleetstream_e2e_latency_seconds",
                                "receipt by a connector to written by a sink, oldest record of each batch",
                                ["sink"], buckets=(.1, .25, .5, 1, 2, 5, 10, 30, 60, 300))
KAFKA_CONSUMER_LAG = Gauge("fleetstream_kafka_consumer_lag",
                           "records behind the partition end, summed over a group's assigned partitions",
                           ["group", "topic"])
SINK_BATCH_SECONDS = Histogram("fleetstream_sink_batch_seconds", "time to write one batch to the store",
                               ["sink"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
SINK_RECORDS = Counter("fleetstream_sink_records_total", "records written by a sink", ["sink"])
SINK_SET_ASIDE = Counter("fleetstream_sink_set_aside_total",
                         "records a sink skipped because its store kept refusing them while answering", ["sink"])
RULE_EVALUATIONS = Counter("fleetstream_rule_evaluations_total", "rule evaluations by outcome", ["outcome"])
COMMAND_OUTCOMES = Counter("fleetstream_command_outcomes_total",
                           "commands reaching a final state (succeeded, failed, expired, rejected)", ["outcome"])
WEBSOCKET_CLIENTS = Gauge("fleetstream_websocket_clients", "live WebSocket/SSE clients connected to this gateway")
HTTP_REQUESTS = Counter("fleetstream_http_requests_total", "gateway requests", ["method", "route", "status"])
HTTP_REQUEST_SECONDS = Histogram("fleetstream_http_request_seconds", "gateway request duration", ["method", "route"],
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))

# port = settings.metrics_port + offset; the gateway serves /metrics on its API port instead
ROLE_PORT_OFFSETS = {"streams": 0, "sink": 1, "connector-mqtt": 2, "connector-modbus": 3, "connector-opcua": 4,
                     "connector-coap": 5, "connector-http": 6}


class TenantLabels:
    """Maps tenant ids to label values, keeping at most ``cap`` distinct ones per process.

    :param cap: how many tenants get their own series; the rest share ``_other``."""

    def __init__(self, cap: int = TENANT_LABEL_CAP):
        self.cap, self._seen, self._lock = cap, set(), threading.Lock()

    def __call__(self, tenant_id: str | None) -> str:
        if not tenant_id:
            return OTHER_TENANT
        if tenant_id in self._seen:
            return tenant_id
        with self._lock:
            if len(self._seen) < self.cap:
                self._seen.add(tenant_id)
                return tenant_id
        return OTHER_TENANT


tenant_label = TenantLabels()


def record_ingest(protocol: str, tenant_id: str | None, n: int = 1) -> None:
    INGEST_MESSAGES.labels(protocol=protocol, tenant=tenant_label(tenant_id)).inc(n)


def record_rejected(protocol: str, reason: str) -> None:
    INGEST_REJECTED.labels(protocol=protocol, reason=reason).inc()


def record_rejection(tenant_id: str | None, source: str, reason: str) -> None:
    REJECTIONS.labels(tenant=tenant_label(tenant_id), source=source, reason=reason).inc()


def record_delivery(protocol: str, err: object | None) -> None:
    """Called from a producer's delivery report: counts the failures the ingest SLO is made of."""
    if err is not None:
        KAFKA_DELIVERY_FAILURES.labels(protocol=protocol).inc()


def observe_sink_batch(sink: str, seconds: float, records: list[dict]) -> None:
    """One successful batch write: its duration, its size and the age of its oldest record."""
    SINK_BATCH_SECONDS.labels(sink=sink).observe(seconds)
    SINK_RECORDS.labels(sink=sink).inc(len(records))
    received = [r["receive_time"] for r in records if isinstance(r.get("receive_time"), int)]
    if received:
        E2E_LATENCY_SECONDS.labels(sink=sink).observe(max(0.0, time.time() - min(received) / 1000))


# -- Kafka consumer lag from librdkafka statistics ------------------------------------------------------
def consumer_stats_config(group: str, interval_ms: int = 15000) -> dict[str, Any]:
    """Extra confluent-kafka consumer config that keeps ``fleetstream_kafka_consumer_lag`` current."""

    def on_stats(raw: str) -> None:
        try:
            stats = json.loads(raw)
        except ValueError:
            return
        for topic, t in (stats.get("topics") or {}).items():
            lag = sum(max(p.get("consumer_lag", -1), 0) for pid, p in (t.get("partitions") or {}).items()
                      if pid != "-1")
            KAFKA_CONSUMER_LAG.labels(group=group, topic=topic).set(lag)

    return {"statistics.interval.ms": interval_ms, "stats_cb": on_stats}


# -- trace context ---------------------------------------------------------------------------------------
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("fs_trace_id", default=None)
_tenant_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("fs_tenant_id", default=None)
_device_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("fs_device_id", default=None)


def new_traceparent(trace_id: str | None = None) -> str:
    return f"00-{trace_id or _random_id(128)}-{_random_id(64)}-01"


def _random_id(bits: int) -> str:
    """A non-zero W3C trace or span id. Not a secret, so Python's PRNG: ``secrets`` reads the kernel's random
    source twice per request, which showed in the gateway's profile (adr/0188)."""
    return f"{random.getrandbits(bits) or 1:0{bits // 4}x}"


def parse_traceparent(value: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` header, or None if absent or malformed."""
    m = _TRACEPARENT.match((value or "").strip().lower())
    if not m or m.group(1) == "0" * 32:
        return None
    return m.group(1)


def current_trace_id() -> str | None:
    return _trace_id.get()


@contextlib.contextmanager
def log_context(*, tenant_id: str | None = None, device_id: str | None = None, trace_id: str | None = None):
    """Log records emitted inside carry these ids (JSON format)."""
    tokens = [(v, v.set(x)) for v, x in ((_tenant_id, tenant_id), (_device_id, device_id), (_trace_id, trace_id))
              if x is not None]
    try:
        yield
    finally:
        for var, tok in reversed(tokens):
            var.reset(tok)


# -- logging ---------------------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, role, msg, tenant_id, device_id, trace_id, exc."""

    def __init__(self, role: str):
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
               "role": self.role, "msg": record.getMessage()}
        for key, var in (("tenant_id", _tenant_id), ("device_id", _device_id), ("trace_id", _trace_id)):
            val = getattr(record, key, None) or var.get()
            if val:
                out[key] = val
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(role: str, fmt: str = "text", level: int = logging.INFO) -> None:
    """``fmt="json"`` for production (one object per line on stderr); ``text`` keeps the local format."""
    root = logging.getLogger()
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(role))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(level)


# -- serving ---------------------------------------------------------------------------------------------
def metrics_port_for(base_port: int, role: str) -> int:
    if role not in ROLE_PORT_OFFSETS:
        raise ValueError(f"no metrics port offset for role {role!r}; known: {sorted(ROLE_PORT_OFFSETS)}")
    return base_port + ROLE_PORT_OFFSETS[role]


def serve_metrics(settings, role: str) -> int | None:
    """Starts the /metrics HTTP server of a non-gateway role; returns its port (None when disabled)."""
    BUILD.info({"role": role, "version": _version()})
    base = getattr(settings, "metrics_port", 0) or 0
    if not base:
        return None
    from prometheus_client import start_http_server

    port = metrics_port_for(base, role)
    start_http_server(port, addr=getattr(settings, "metrics_host", None) or settings.host)
    logging.getLogger(__name__).info("metrics for %s on :%d/metrics", role, port)
    return port


def instrument_fastapi(app, role: str = "gateway") -> None:
    """Adds ``GET /metrics``, request metrics (by route template, never raw path) and traceparent handling."""
    from starlette.responses import Response

    BUILD.info({"role": role, "version": _version()})

    app.add_middleware(_Observe)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class _Observe:
    """Request metrics and the traceparent, as a plain ASGI middleware: Starlette's ``BaseHTTPMiddleware``
    (``@app.middleware("http")``) runs every request through a task group and memory streams, a fixed cost
    larger than a cached answer itself (adr/0188)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        header = next((v for k, v in scope["headers"] if k == b"traceparent"), None)
        trace_id = parse_traceparent(header.decode("latin-1") if header is not None else None) or _random_id(128)
        token = _trace_id.set(trace_id)
        t0 = time.perf_counter()
        status = 500

        async def send_with_traceparent(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"traceparent"]
                headers.append((b"traceparent", new_traceparent(trace_id).encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_traceparent)
        finally:
            route = scope.get("route")
            template = _route_template(scope["path"], scope.get("path_params") or {}) \
                if getattr(route, "path", None) else "_unmatched"
            if template != "/metrics":
                HTTP_REQUESTS.labels(scope["method"], template, str(status)).inc()
                HTTP_REQUEST_SECONDS.labels(scope["method"], template).observe(time.perf_counter() - t0)
            _trace_id.reset(token)


def _route_template(path: str, params: dict) -> str:
    """The matched route's template with its prefixes (nested routers hold paths relative to their
    prefix): the request path with each path-parameter segment replaced by ``{name}``."""
    by_value = {str(v): k for k, v in params.items()}
    return "/".join("{" + by_value[seg] + "}" if seg in by_value else seg for seg in path.split("/"))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("fleetstream")
    except Exception:
        return "unknown"
