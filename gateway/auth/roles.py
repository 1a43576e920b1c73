"""A user's role is a set of the API scopes machine clients already have (adr/0160): the console and the API
check the same scopes, so a role can do in the browser exactly what a client with those scopes can do."""

from __future__ import annotations

from typing import Literal

Role = Literal["owner", "admin", "operator", "viewer"]
ROLES: tuple[str, ...] = ("owner", "admin", "operator", "viewer")

_VIEWER = ("devices:read", "telemetry:read")
# operators run the fleet: shadows (devices:write), commands, alerts (rules:write), OTA campaigns
_OPERATOR = _VIEWER + ("devices:write", "commands:write", "rules:write", "ota:write")
_ADMIN = _OPERATOR + ("clients:write", "audit:read", "users:write", "kafka:credentials")

SCOPES: dict[str, tuple[str, ...]] = {
    "viewer": _VIEWER,
    "operator": _OPERATOR,
    "admin": _ADMIN,
    "owner": _ADMIN,  # the same API reach as admin; only an owner may make or change owners
}


def scopes_of(role: str) -> list[str]:
    return list(SCOPES[role])
