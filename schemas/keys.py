"""Kafka keys are tenant-first so that a device's records share a partition and keep their order."""

from __future__ import annotations

from .errors import KeySerializationError


def device_key(tenant_id: str, device_id: str) -> bytes:
    if not tenant_id or not device_id or ":" in tenant_id:
        raise KeySerializationError(f"bad tenant/device for a key: {tenant_id!r}/{device_id!r}")
    return f"{tenant_id}:{device_id}".encode()


def split_key(key: bytes) -> tuple[str, str]:
    tenant, sep, device = key.decode().partition(":")
    if not sep:
        raise KeySerializationError(f"key {key!r} is not tenant:device")
    return tenant, device
