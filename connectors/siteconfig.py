"""Site configuration files: YAML, validated with pydantic, errors that name the object and the key.

A site is provisioned by a tenant and deployed by the platform: the file (not any device) names the
``tenant_id``, and every device it lists belongs to that tenant. The connector trusts the file because
only the platform's deployment writes it (adr/0041); a device on the field bus never chooses its tenant.

An invalid file fails with every problem at once, each as ``site/<site_id>/<device>/<point>: <key> <problem>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .device_commands import DeviceTypeConfig, check_commands, effective_commands
from .errors import ConfigError

M = TypeVar("M", bound=BaseModel)

# the key that names an item of a list, so errors say "pump-1/flow" rather than "devices.0.points.3"
NAME_KEYS = ("device_id", "metric", "name", "node_id", "host", "endpoint", "id")


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_second: float = Field(100.0, gt=0, description="readings a device may send per second")
    burst: float = Field(200.0, ge=1, description="readings a device may send at once")


class SiteConfigBase(BaseModel):
    """Keys every site file has."""

    model_config = ConfigDict(extra="forbid")
    site_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    tenant_id: str = Field(min_length=1, description="the tenant that provisioned this site")
    rate_limit: RateLimit = RateLimit()
    device_types: dict[str, DeviceTypeConfig] = Field(
        {}, description="named commands shared by the devices that name the type (adr/0152)")


def check_unique_devices(field: str, groups: list[Any]) -> None:
    """A device id names one device in a site, whichever gateway or server lists it (``groups``: those objects,
    each with ``devices``); ``field`` is the site key the error names."""
    seen: set[str] = set()
    for g in groups:
        for d in g.devices:
            if d.device_id in seen:
                raise ValueError(f"{field}: device_id {d.device_id!r} appears twice in the site")
            seen.add(d.device_id)


def check_device_commands(field: str, groups: list[Any], types: dict[str, DeviceTypeConfig],
                          with_methods: bool) -> None:
    """Each device's ``device_type`` exists and each of its named commands targets what the device has."""
    for g in groups:
        for d in g.devices:
            if d.device_type is not None and d.device_type not in types:
                raise ValueError(f"{field}: {d.device_id}: device_type {d.device_type!r} is not in device_types")
            writable = {p.metric for p in getattr(d, "points", None) or getattr(d, "nodes", []) if p.writable}
            methods = {m.name for m in d.methods} if with_methods else None
            try:
                check_commands(effective_commands(d.device_type, d.commands, types), writable, methods)
            except ValueError as exc:
                raise ValueError(f"{field}: {d.device_id}: {exc}") from None


def _name(item: Any, index: int) -> str:
    if isinstance(item, dict):
        for k in NAME_KEYS:
            if isinstance(item.get(k), (str, int)):
                return str(item[k])
    return f"#{index}"


def describe(raw: dict, loc: tuple) -> tuple[str, str]:
    """(object path, key) of a pydantic error location, with list items named by their id."""
    path, node, key = [], raw, None
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            path.append(_name(item, part))
            node = item
        elif last or not isinstance(node, dict) or not isinstance(node.get(part), (list, dict)):
            key = ".".join(str(p) for p in loc[i:])
            break
        else:
            node = node.get(part)
            if isinstance(node, dict):  # a nested mapping that is not a list item: part of the key path
                path.append(str(part))
    return "/".join(path), key or ""


def validate_site(raw: Any, model: type[M]) -> M:
    if not isinstance(raw, dict):
        raise ConfigError("site: the file must hold a mapping with site_id, tenant_id, …")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        site = f"site/{raw.get('site_id', '?')}"
        lines = []
        for e in exc.errors():
            obj, key = describe(raw, tuple(e["loc"]))
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{site}{'/' + obj if obj else ''}: {key + ' ' if key else ''}{msg}")
        raise ConfigError("\n".join(lines)) from None


def load_site(path: Path | str, model: type[M]) -> M:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"site: cannot read {path}: {exc}") from None
    return validate_site(raw, model)


# which protocol a site file is for, by the key that lists its peers (docs/sites.md)
PROTOCOL_KEYS = {"gateways": "modbus", "servers": "opcua"}


@dataclass(frozen=True)
class SiteFile:
    protocol: str
    path: Path
    site: SiteConfigBase


def site_protocol(raw: Any, path: Path | str = "site") -> str:
    kinds = {PROTOCOL_KEYS[k] for k in PROTOCOL_KEYS if isinstance(raw, dict) and k in raw}
    if len(kinds) != 1:
        raise ConfigError(f"{path}: a site file lists either gateways (Modbus) or servers (OPC-UA)")
    return kinds.pop()


def load_site_dir(directory: Path | str) -> list[SiteFile]:
    """Every ``*.yaml``/``*.yml`` site file of ``directory``, validated; one ``ConfigError`` naming every bad
    file and problem, so ``fleetstream up --sites DIR`` starts all of them or none."""
    from .modbus.config import ModbusSiteConfig
    from .opcua.config import OpcUaSiteConfig

    models = {"modbus": ModbusSiteConfig, "opcua": OpcUaSiteConfig}
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"{d}: not a directory")
    out, errors, ids = [], [], {}
    for path in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
        try:
            raw = yaml.safe_load(path.read_text())
            protocol = site_protocol(raw, path)
            site = validate_site(raw, models[protocol])
        except (OSError, yaml.YAMLError) as exc:
            errors.append(f"{path}: cannot read: {exc}")
            continue
        except ConfigError as exc:
            errors.append(f"{path}:\n{exc}")
            continue
        if site.site_id in ids:
            errors.append(f"{path}: site_id {site.site_id!r} is also used by {ids[site.site_id]}")
            continue
        ids[site.site_id] = path
        out.append(SiteFile(protocol, path.resolve(), site))
    if errors:
        raise ConfigError("\n".join(errors))
    if not out:
        raise ConfigError(f"{d}: no site files (*.yaml)")
    return out
