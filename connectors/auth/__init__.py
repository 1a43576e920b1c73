"""Device authentication shared by the HTTP ingest route and the CoAP connector."""

from .device_jwt import (
    AUDIENCE,
    DeviceIdentity,
    DeviceJwtVerifier,
    DeviceKey,
    DeviceTokenError,
    ReplayCache,
    key_id,
    sign_device_jwt,
)

__all__ = ["AUDIENCE", "DeviceIdentity", "DeviceJwtVerifier", "DeviceKey", "DeviceTokenError", "ReplayCache",
           "key_id", "sign_device_jwt"]
