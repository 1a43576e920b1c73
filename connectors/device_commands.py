"""Named commands of site devices (Modbus, OPC-UA): what a command name means for a device, the one shape of
its params, and which failures the command agent should retry (adr/0152, docs/commands.md).

Names a device answers to:
- ``write``: ``{"values": {"<metric>": <value>, …}}`` — writable points/nodes, engineering units;
- ``call`` (OPC-UA): ``{"method": "<method name>", "args": [...]}`` — a method of the device's ``methods``;
- the names its site file defines (``commands:`` of the device, or of its ``device_type``), each mapping to a
  write or a call: ``{name: open_valve, write: {valve: true}}`` (fixed values, no params),
  ``{name: set_temperature, write: setpoint}`` (params ``{"value": 72.5}``), ``{name: reset, call: reset}``
  (params ``{"args": [...]}``, optional).
Any other name is refused with the names the device knows. Before issue 16 a write's params were the flat map
``{"<metric>": value}`` (both protocols) or ``{"metric": m, "value": v}`` (Modbus): both are still accepted,
normalised, and the result says ``"deprecated_params": true``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import CommandResult

BUILTIN = ("write", "call")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"  # as the command API allows


class CommandConfig(BaseModel):
    """A named command of a device (or device type): exactly one of ``write`` and ``call``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=_NAME)
    write: str | dict[str, Any] | None = Field(
        None, description="a metric (the value comes from params.value) or fixed {metric: value}")
    call: str | None = Field(None, description="a method of the device's methods (OPC-UA)")
    description: str | None = None

    @model_validator(mode="after")
    def _one_action(self) -> CommandConfig:
        if (self.write is None) == (self.call is None):
            raise ValueError("write/call: give exactly one")
        if self.name in BUILTIN:
            raise ValueError(f"name: {self.name!r} is built in")
        if isinstance(self.write, dict) and not self.write:
            raise ValueError("write: names no metric")
        return self

    @property
    def targets(self) -> list[str]:
        return [self.write] if isinstance(self.write, str) else list(self.write or {})


class DeviceTypeConfig(BaseModel):
    """What devices of one type share in a site file: their named commands."""

    model_config = ConfigDict(extra="forbid")
    commands: list[CommandConfig] = []


def effective_commands(device_type: str | None, own: list[CommandConfig],
                       types: dict[str, DeviceTypeConfig]) -> dict[str, CommandConfig]:
    """The type's commands, then the device's own (a device's command replaces its type's of that name)."""
    out = {c.name: c for c in (types[device_type].commands if device_type in types else [])}
    out.update({c.name: c for c in own})
    return out


def check_commands(commands: dict[str, CommandConfig], writable: set[str], methods: set[str] | None) -> None:
    """ValueError naming the first command whose target the device does not have (``methods`` None: no calls)."""
    for c in commands.values():
        if c.call is not None:
            if methods is None:
                raise ValueError(f"commands: {c.name}: this protocol has no methods to call")
            if c.call not in methods:
                raise ValueError(f"commands: {c.name}: no method {c.call!r}")
        for m in c.targets:
            if m not in writable:
                raise ValueError(f"commands: {c.name}: {m!r} is not a writable point")


class CommandRefused(ValueError):
    """The command cannot be carried out as asked: unknown name, params of the wrong shape."""


@dataclass
class Action:
    kind: str  # "write" or "call"
    values: dict[str, Any] = field(default_factory=dict)
    method: str | None = None
    args: list = field(default_factory=list)
    deprecated_params: bool = False


def _params(params_json: str | None) -> dict:
    try:
        params = json.loads(params_json or "{}")
    except ValueError:
        raise CommandRefused("params_json is not JSON") from None
    if not isinstance(params, dict):
        raise CommandRefused("params must be a JSON object")
    return params


def write_values(params: dict) -> tuple[dict[str, Any], bool]:
    """The documented ``{"values": {...}}``, or a pre-issue-16 shape (second item True)."""
    if set(params) == {"values"} and isinstance(params["values"], dict):
        values, old = params["values"], False
    elif set(params) == {"metric", "value"} and isinstance(params["metric"], str):
        values, old = {params["metric"]: params["value"]}, True
    else:
        values, old = params, True
    if not values:
        raise CommandRefused('write needs params {"values": {"<metric>": <value>, ...}}')
    return values, old


def plan(name: str, params_json: str | None, device_id: str, commands: dict[str, CommandConfig], *,
         can_call: bool) -> Action:
    """What command ``name`` with these params asks of the device; ``CommandRefused`` with the reason."""
    params = _params(params_json)
    if name == "write":
        values, old = write_values(params)
        return Action("write", values=values, deprecated_params=old)
    if name == "call" and can_call:
        method, args = params.get("method"), params.get("args", [])
        if not isinstance(method, str) or not isinstance(args, list) or set(params) - {"method", "args"}:
            raise CommandRefused('call needs params {"method": "<name>", "args": [...]}')
        return Action("call", method=method, args=args)
    c = commands.get(name)
    if c is None:
        known = sorted([*(BUILTIN if can_call else ("write",)), *commands])
        raise CommandRefused(f"{device_id} has no command {name!r}; it knows: {', '.join(known)}")
    if c.call is not None:
        args = params.get("args", [])
        if not isinstance(args, list) or set(params) - {"args"}:
            raise CommandRefused(f'{name} takes params {{"args": [...]}} (or none)')
        return Action("call", method=c.call, args=args)
    if isinstance(c.write, dict):
        if params:
            raise CommandRefused(f"{name} takes no params: it writes {json.dumps(c.write)}")
        return Action("write", values=dict(c.write))
    if set(params) != {"value"}:
        raise CommandRefused(f'{name} takes params {{"value": <value for {c.write}>}}')
    return Action("write", values={c.write: params["value"]})


def transient_failure(command: dict, reason: str) -> CommandResult:
    """A link failure (not connected, timed out, device busy): unanswered while the command agent has attempts
    left, so it delivers the command again after its backoff; FAILED with the reason on the last attempt."""
    attempt, most = command.get("attempt") or 1, command.get("max_attempts") or 1
    if attempt < most:
        return CommandResult.not_delivered(f"transient failure on attempt {attempt} of {most}, "
                                           f"left to the command agent's retry: {reason}")
    return CommandResult(False, f"transient failure on the last attempt ({attempt} of {most}): {reason}")


def succeeded(action: Action, written: dict[str, Any], holds: dict[str, Any]) -> CommandResult:
    """A write's result: what was asked, what the device holds now (read back), and where they differ."""
    result: dict[str, Any] = {"written": written, "holds": holds}
    differs = sorted(m for m in written if m in holds and holds[m] != written[m])
    if differs:
        result["differs"] = differs
    if action.deprecated_params:
        result["deprecated_params"] = True
    return CommandResult(True, result=result)
