"""Protocol-neutral refusals. Each carries an HTTP-style ``status`` and a stable ``code``; every protocol
translates them at its own edge (HTTP status, CoAP 4.xx, MQTT reason code) and the dead-letter record
uses the same ``code`` as its ``reason_code``."""

from __future__ import annotations

from schemas.errors import FleetstreamError


class ConnectorError(FleetstreamError):
    status = 400
    code = "connector_error"


class PayloadInvalidError(ConnectorError):
    status = 400
    code = "invalid_payload"


class UnauthenticatedError(ConnectorError):
    status = 401
    code = "unauthenticated"


class DeviceDisabledError(ConnectorError):
    status = 403
    code = "device_disabled"


class DeviceNotRegisteredError(ConnectorError):
    status = 404
    code = "unknown_device"


class QuotaExceededError(ConnectorError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


def payload_error(code: str, reason: str) -> PayloadInvalidError:
    """A refusal of the whole payload carrying the dead letter's own ``reason_code`` (oversize → 413)."""
    err = PayloadInvalidError(reason)
    err.code = code
    if code == "oversize":
        err.status = 413
    return err


class ConfigError(ConnectorError):
    """A site configuration file is invalid; the message names ``site/device/point: key problem``."""

    code = "invalid_config"


BY_CODE: dict[str, type[ConnectorError]] = {
    c.code: c for c in (PayloadInvalidError, UnauthenticatedError, DeviceDisabledError,
                        DeviceNotRegisteredError, QuotaExceededError)
}

__all__ = ["ConnectorError", "PayloadInvalidError", "UnauthenticatedError", "DeviceDisabledError",
           "DeviceNotRegisteredError", "QuotaExceededError", "ConfigError", "BY_CODE", "payload_error"]
