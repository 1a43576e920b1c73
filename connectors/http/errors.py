"""Connector refusals → HTTP: the status is the error's own; the body is the gateway's error model."""

from __future__ import annotations

from ..errors import ConnectorError, QuotaExceededError


def http_headers(err: ConnectorError) -> dict[str, str]:
    if isinstance(err, QuotaExceededError):
        return {"Retry-After": str(max(1, round(err.retry_after)))}
    if err.status == 401:
        return {"WWW-Authenticate": 'Bearer realm="fleetstream-ingest"'}
    return {}
