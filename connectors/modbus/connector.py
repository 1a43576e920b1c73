"""Polls a site's Modbus TCP gateways and publishes each device's readings; writes deliver commands.

Every device of the file belongs to the file's tenant (adr/0041). A device's points are grouped by
interval; each group is read with as few requests as batching allows and becomes one telemetry record.
A failed read publishes what else was read and a ``READ_ERROR`` device event (once per outage of that
block, so a dead PLC does not flood the event topic); the scan loop keeps going and reconnects.

A block the device refuses as a wrong request (illegal address/function/value) is halved until every refused
point is isolated; the refused points are remembered (not read again until the connector restarts), logged
and listed in a ``CONFIG_ISSUE`` event, and the valid points keep arriving (adr/0151). Status follows poll
health: ``ONLINE`` on the first good poll and when reads resume after failures; ``OFFLINE`` after
``offline_after_failures`` polls in a row failed, stamped with the time of the last reading, so the device's
``last_seen`` is its last reading."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..base import Admission, CommandResult, ConnectorHealth, PollGroup, PollingConnector, UplinkContext
from ..canonical import Rejected
from ..device_commands import CommandRefused, effective_commands, plan, succeeded, transient_failure
from ..uplink import UplinkPublisher, now_ms
from .adaptor import raw_bytes, read_back, to_reading, to_wire
from .config import DeviceConfig, GatewayConfig, ModbusSiteConfig, PointConfig
from .errors import read_error_details
from .link import DeviceRefused, LinkError, ModbusLink
from .plan import ReadBlock, halves, plan_reads

log = logging.getLogger(__name__)


@dataclass
class _Scan:
    link: ModbusLink
    gateway: GatewayConfig
    device: DeviceConfig
    blocks: list[ReadBlock]


@dataclass
class _Health:
    online: bool | None = None
    failures: int = 0  # polls in a row in which no block could be read
    last_reading_ms: int | None = None


class ModbusConnector(PollingConnector):
    """:param site: the validated site file. :param uplink, admission: see ``BaseConnector``."""

    type_name = "modbus"

    def __init__(self, uplink: UplinkPublisher, site: ModbusSiteConfig, admission: Admission | None = None):
        super().__init__(uplink, admission)
        self.site = site
        self.links: dict[str, ModbusLink] = {}
        self._devices: dict[str, tuple[ModbusLink, DeviceConfig]] = {}
        self._failing: set[tuple[str, str, int]] = set()  # (device, block address) currently in READ_ERROR
        self._health: dict[str, _Health] = {}
        self.scans: dict[str, _Scan] = {}  # poll group → what it reads now (refused points dropped)
        self.refused: dict[str, dict[str, str]] = {}  # device → metric → why the device refuses to read it
        self.stats.update(read_errors=0, writes=0, refused_points=0)

    async def on_start(self) -> None:
        # pymodbus clients bind to the running loop: links are made here, not in __init__
        for g in self.site.gateways:
            key = f"{g.host}:{g.port}"
            link = self.links.get(key) or ModbusLink(g.host, g.port, timeout_s=g.timeout_s, frame_gap_s=g.frame_gap_s,
                                                     reconnect_min_s=g.reconnect_min_s,
                                                     reconnect_max_s=g.reconnect_max_s)
            self.links[key] = link
            for d in g.devices:
                self._devices[d.device_id] = (link, d)

    def poll_groups(self) -> list[PollGroup]:
        groups = []
        for g in self.site.gateways:
            link = self.links[f"{g.host}:{g.port}"]
            for d in g.devices:
                by_interval: dict[float, list[PointConfig]] = {}
                for p in d.points:
                    by_interval.setdefault(p.interval_s or d.interval_s, []).append(p)
                for interval, pts in sorted(by_interval.items()):
                    name = f"{d.device_id}@{interval:g}s"
                    self.scans[name] = _Scan(link, g, d, plan_reads(pts, g.max_gap))
                    groups.append(PollGroup(name, interval, self.scans[name]))
        return groups

    async def poll(self, group: PollGroup) -> None:
        scan: _Scan = group.payload
        dev = scan.device
        got: list[tuple[ReadBlock, list]] = []
        blocks: list[ReadBlock] = []
        failed = refused = 0
        for block in scan.blocks:
            key = (dev.device_id, block.function.value, block.address)
            try:
                read, leaves, bad = await self._read(scan, block)
            except LinkError as exc:
                failed += 1
                blocks.append(block)
                self.stats["read_errors"] += 1
                if key not in self._failing:
                    self._failing.add(key)
                    self.report_event(self.site.tenant_id, dev.device_id, "READ_ERROR", reason=str(exc),
                                      details=read_error_details(scan.link.name, dev.unit_id, block, str(exc)))
                continue
            self._failing.discard(key)
            got += read
            blocks += leaves
            if bad:
                refused += len(bad)
                self._refuse(scan, bad)
        scan.blocks = blocks  # refused points are left out from now on; split blocks stay split
        received = now_ms()
        self._follow_health(dev, ok=bool(got), failed=failed > 0 and not got, at_ms=received)
        if not got:
            return
        reading, bad_values = to_reading(got, received)
        ctx = UplinkContext(self.site.tenant_id, dev.device_id,
                            f"modbus://{scan.link.name}/{dev.unit_id}", received)
        raw = raw_bytes(dev.unit_id, got)
        rejected = [Rejected(b.code, b.reason, raw) for b in bad_values]
        self.publish_uplink(ctx, raw, [reading] if reading else [], rejected)

    async def _read(self, scan: _Scan, block: ReadBlock) -> tuple[list[tuple[ReadBlock, list]], list[ReadBlock],
                                                                 list[tuple[PointConfig, str]]]:
        """(what was read, the blocks that worked, the points refused and why). A refusal of the request is
        bisected; a link failure (or a refusal of the moment: busy, gateway path) raises ``LinkError``."""
        dev = scan.device
        try:
            regs = await scan.link.read(block.function, block.address, block.count, dev.unit_id)
            return [(block, regs)], [block], []
        except DeviceRefused as exc:
            if not exc.request_is_wrong:
                raise
            if len(block.points) == 1:
                return [], [], [(block.points[0], str(exc))]
            got, ok, bad = [], [], []
            for half in halves(block):
                g, o, b = await self._read(scan, half)
                got, ok, bad = got + g, ok + o, bad + b
            return got, ok, bad

    def _refuse(self, scan: _Scan, bad: list[tuple[PointConfig, str]]) -> None:
        dev = scan.device
        mine = self.refused.setdefault(dev.device_id, {})
        for p, why in bad:
            log.warning("modbus %s: %s/%s (%s %d) refused by the device, no longer read: %s", scan.link.name,
                        dev.device_id, p.metric, p.function.value, p.address, why)
            mine[p.metric] = f"{p.function.value} {p.address}+{p.registers}: {why}"
        self.stats["refused_points"] += len(bad)
        self.report_event(self.site.tenant_id, dev.device_id, "CONFIG_ISSUE",
                          reason=f"{len(bad)} point(s) refused by the device and no longer read: "
                          + ", ".join(p.metric for p, _ in bad),
                          details={p.metric: mine[p.metric] for p, _ in bad})

    def _follow_health(self, dev: DeviceConfig, *, ok: bool, failed: bool, at_ms: int) -> None:
        h = self._health.setdefault(dev.device_id, _Health())
        if ok:
            if h.online is not True or h.failures:  # the recovery event; also the first good poll
                reason = f"reads resumed after {h.failures} failed poll(s)" if h.failures or h.online is False \
                    else "first successful poll"
                # stamped like this poll's reading, so a later OFFLINE (stamped with the last reading) is never
                # older than it and the status agent does not drop it as out of order
                self.report_event(self.site.tenant_id, dev.device_id, "ONLINE", reason=reason, at_ms=at_ms,
                                  details={"failed_polls": str(h.failures)})
            h.online, h.failures, h.last_reading_ms = True, 0, at_ms
        elif failed:
            h.failures += 1
            if h.failures >= dev.offline_after_failures and h.online is not False:
                h.online = False
                self.report_event(self.site.tenant_id, dev.device_id, "OFFLINE", at_ms=h.last_reading_ms or at_ms,
                                  reason=f"{h.failures} polls in a row failed",
                                  details={"failed_polls": str(h.failures),
                                           "last_reading": str(h.last_reading_ms or "")})

    async def on_stop(self) -> None:
        for link in self.links.values():
            link.close()

    def health(self) -> ConnectorHealth:
        down = [name for name, link in self.links.items() if not link.connected]
        return ConnectorHealth(not down, f"not connected: {', '.join(down)}" if down else "all links connected",
                               {**self.stats, "polls": self.polls})

    # -- commands --------------------------------------------------------------------------------------
    def serves(self, tenant_id: str, device_id: str) -> bool:
        return tenant_id == self.site.tenant_id and device_id in self._devices

    async def deliver_command(self, command: dict[str, Any]) -> CommandResult:
        """The command contract of ``connectors/device_commands.py`` (docs/commands.md): ``write`` or a named
        write of the site file; each value must be exactly representable by its point (never rounded); the
        result reports what the registers hold after the write (read back). A link failure is left to the
        command agent's retry while attempts remain."""
        link, dev = self._devices[command["device_id"]]
        try:
            action = plan(command["name"], command.get("params_json"), dev.device_id,
                          effective_commands(dev.device_type, dev.commands, self.site.device_types), can_call=False)
        except CommandRefused as exc:
            return CommandResult(False, str(exc))
        points = {p.metric: p for p in dev.points}
        writes = []
        for metric, value in action.values.items():
            p = points.get(metric)
            if p is None or not p.writable:
                return CommandResult(False, f"{metric!r} is not a writable point of {dev.device_id}")
            try:
                writes.append((p, to_wire(p, value)))
            except ValueError as exc:
                return CommandResult(False, str(exc))
        holds: dict[str, Any] = {}
        try:
            for p, regs in writes:  # validated all first: a bad value writes nothing
                await link.write(p.function, p.address, regs, dev.unit_id)
                self.stats["writes"] += 1
            for p, _ in writes:
                holds[p.metric] = read_back(p, await link.read(p.function, p.address, p.registers, dev.unit_id))
        except DeviceRefused as exc:
            if not exc.transient:
                return CommandResult(False, str(exc))
            return transient_failure(command, str(exc))
        except LinkError as exc:
            return transient_failure(command, str(exc))
        return succeeded(action, {p.metric: action.values[p.metric] for p, _ in writes}, holds)
