"""Device authentication shared by the HTTP ingest route and the CoAP connector."""

from .device_jwt import (
    AUDIENCE,
    PROOF_AUDIENCE,
    DeviceIdentity,
    DeviceJwtVerifier,
    DeviceKey,
    DeviceTokenError,
    ReplayCache,
    key_id,
    sign_device_jwt,
    sign_key_proof,
    verify_key_proof,
)

__all__ = ["AUDIENCE", "PROOF_AUDIENCE", "DeviceIdentity", "DeviceJwtVerifier", "DeviceKey", "DeviceTokenError",
           "ReplayCache", "key_id", "sign_device_jwt", "sign_key_proof", "verify_key_proof"]
