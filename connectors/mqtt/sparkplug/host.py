"""The Sparkplug B 3.0 host application's view of edge nodes: births, deaths, aliases, sequence numbers and
rebirth requests, turned into fleetstream verdicts (adr/0155). Pure: no I/O, one instance per connector, fed
in the order the broker delivered the messages (one MQTT connection, so per-edge-node order holds).

Mapping: the group id is the tenant (the broker lets an edge node use only ``spBv1.0/<its tenant>/…/<its
device id>``, adr/0156), the edge node is the fleetstream device whose certificate it connected with, and a
Sparkplug device ``D`` of edge node ``E`` is fleetstream device ``E.D``, known from its DBIRTH, at most
``max_devices`` per edge node.

What each message becomes:
- NBIRTH: the node's aliases, datatypes, bdSeq and seq are replaced; its devices are forgotten until their
  DBIRTH; an ONLINE event for the node; its metrics as a reading.
- DBIRTH: the device's aliases; ONLINE for ``E.D``; its metrics as a reading.
- NDATA/DDATA: readings, metrics resolved by alias or name.
- NDEATH: OFFLINE for the node and each of its devices, if its bdSeq is the current birth's; a death of an
  older session (the broker publishes a Will late) is dead-lettered ``sparkplug_stale_death``.
- DDEATH: OFFLINE for ``E.D``.
- A data message or DBIRTH/DDEATH from a node without a current birth, or for a device without one, cannot be
  decoded (aliases unknown): dead-lettered ``sparkplug_no_birth`` and a rebirth requested. A seq that is not
  the previous one + 1 (mod 256) means messages were lost: a rebirth is requested and the message is still
  stored (its aliases are known).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from connectors import canonical
from connectors.canonical import Reading, Rejected

from . import payload as pb

log = logging.getLogger(__name__)

BD_SEQ = "bdSeq"
NODE_CONTROL = "Node Control/"
REBIRTH = "Node Control/Rebirth"
REBIRTH_INTERVAL_MS = 5_000  # at most one rebirth request per edge node this often: a burst of gaps is one
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a fleetstream device id (gateway/identity)
# Reason codes of messages and metrics this module dead-letters (beside canonical.REASON_CODES)
CODES = frozenset({"sparkplug_invalid_payload", "sparkplug_no_birth", "sparkplug_invalid_birth",
                   "sparkplug_stale_death", "sparkplug_device_limit", "sparkplug_bad_device_id",
                   "sparkplug_unknown_alias", "sparkplug_unsupported_type", "sparkplug_null", "sparkplug_empty"})
SUPPORTED = pb.NUMERIC | pb.TEXTUAL | {pb.BOOLEAN}


@dataclass
class _Metrics:
    aliases: dict[int, str] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)

    def learn(self, metrics: list[pb.Metric]) -> None:
        for m in metrics:
            if m.name is None:
                continue
            if m.datatype is not None:
                self.types[m.name] = m.datatype
            if m.alias is not None:
                self.aliases[m.alias] = m.name


@dataclass
class _Device:
    metrics: _Metrics
    online: bool = True


@dataclass
class _Node:
    bd_seq: int
    seq: int
    metrics: _Metrics
    devices: dict[str, _Device] = field(default_factory=dict)
    online: bool = True


@dataclass
class Event:
    device_id: str
    event_type: str  # ONLINE | OFFLINE
    reason: str
    details: dict[str, str]


@dataclass
class Outcome:
    """What one message becomes: readings and rejects per fleetstream device, events, or a refusal of the
    whole message; and whether the edge node must be asked to rebirth."""

    uplinks: list[tuple[str, list[Reading], list[Rejected]]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    refused: tuple[str, str, str] | None = None  # (device id, code, reason)
    rebirth: bool = False


@dataclass(frozen=True)
class Target:
    """Where a command for a fleetstream device goes: the edge node, its Sparkplug device (None: the node)
    and the datatypes its birth declared."""

    edge_node: str
    device: str | None
    types: dict[str, int]


class SparkplugHost:
    """:param max_devices: Sparkplug devices one edge node may bring (each becomes a fleetstream device).
    :param clock: epoch milliseconds (rebirth pacing)."""

    def __init__(self, *, max_devices: int = 100, max_skew_ms: int = 300_000,
                 clock: Callable[[], int] | None = None):
        import time

        self.max_devices, self.max_skew_ms = max_devices, max_skew_ms
        self.clock = clock or (lambda: int(time.time() * 1000))
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._last_rebirth: dict[tuple[str, str], int] = {}

    # -- commands ----------------------------------------------------------------------------------------
    def target(self, tenant_id: str, device_id: str) -> Target | None:
        """The edge node or Sparkplug device a fleetstream device is, while its birth is current."""
        node = self._nodes.get((tenant_id, device_id))
        if node is not None:
            return Target(device_id, None, dict(node.metrics.types))
        edge, dot, dev = device_id.rpartition(".")
        while dot:  # edge node ids may themselves hold dots: try each split, longest edge id first
            node = self._nodes.get((tenant_id, edge))
            if node is not None and (d := node.devices.get(dev)) is not None:
                return Target(edge, dev, dict(d.metrics.types))
            edge, dot, rest = edge.rpartition(".")
            dev = f"{rest}.{dev}"
        return None

    # -- messages ----------------------------------------------------------------------------------------
    def handle(self, tenant_id: str, kind: str, edge: str, device: str | None, raw: bytes,
               received_ms: int) -> Outcome:
        out = Outcome()
        me = edge if device is None else f"{edge}.{device}"
        try:
            msg = pb.decode(raw)
        except pb.InvalidPayload as exc:
            out.refused = (edge, "sparkplug_invalid_payload", str(exc))
            return out
        key = (tenant_id, edge)
        if kind == "NBIRTH":
            return self._nbirth(key, msg, raw, received_ms, out)
        node = self._nodes.get(key)
        if kind == "NDEATH":
            return self._ndeath(key, node, msg, out)
        if node is None or not node.online:
            out.refused = (me, "sparkplug_no_birth", f"{kind} from edge node {edge!r} before its NBIRTH: its "
                           "metric aliases are unknown; a rebirth was requested")
            out.rebirth = self._may_rebirth(key)
            return out
        self._check_seq(key, node, msg, kind, out)
        if device is None:
            if kind != "NDATA":
                out.refused = (me, "sparkplug_invalid_payload", f"{kind} needs a device id in its topic")
                return out
            self._readings(edge, node.metrics, msg, raw, received_ms, out)
        elif kind == "DBIRTH":
            self._dbirth(node, edge, device, msg, raw, received_ms, out)
        else:
            dev = node.devices.get(device)
            if dev is None or not dev.online:
                out.refused = (me, "sparkplug_no_birth", f"{kind} for device {device!r} of edge node {edge!r} "
                               "before its DBIRTH; a rebirth was requested")
                out.rebirth = out.rebirth or self._may_rebirth(key)
            elif kind == "DDATA":
                self._readings(me, dev.metrics, msg, raw, received_ms, out)
            else:  # DDEATH
                dev.online = False
                out.events.append(Event(me, "OFFLINE", "Sparkplug DDEATH",
                                        {"edge_node": edge, "sparkplug_device": device}))
        if not out.uplinks and not out.events and out.refused is None:
            out.refused = (me, "sparkplug_empty", f"{kind} carried no metric")
        return out

    def _nbirth(self, key, msg: pb.Decoded, raw: bytes, received_ms: int, out: Outcome) -> Outcome:
        edge = key[1]
        bd = next((m for m in msg.metrics if m.name == BD_SEQ and isinstance(m.value, int)), None)
        if bd is None or msg.seq is None:
            out.refused = (edge, "sparkplug_invalid_birth", "an NBIRTH must carry seq and a bdSeq metric")
            out.rebirth = self._may_rebirth(key)
            return out
        metrics = _Metrics()
        metrics.learn(msg.metrics)
        old = self._nodes.get(key)
        self._nodes[key] = _Node(bd.value, msg.seq, metrics)
        if old is not None:  # devices of the previous session that no NBIRTH/DBIRTH has answered for
            for name, dev in old.devices.items():
                if dev.online:
                    out.events.append(Event(f"{edge}.{name}", "OFFLINE", "Sparkplug NBIRTH of a new session",
                                            {"edge_node": edge, "sparkplug_device": name}))
        out.events.append(Event(edge, "ONLINE", "Sparkplug NBIRTH", {"edge_node": edge, "bdSeq": str(bd.value)}))
        self._readings(edge, metrics, msg, raw, received_ms, out)
        return out

    def _ndeath(self, key, node: _Node | None, msg: pb.Decoded, out: Outcome) -> Outcome:
        edge = key[1]
        bd = next((m.value for m in msg.metrics if m.name == BD_SEQ), None)
        if node is None or bd != node.bd_seq or not node.online:
            out.refused = (edge, "sparkplug_stale_death", f"NDEATH with bdSeq {bd} does not end the current "
                           f"session (bdSeq {node.bd_seq if node else 'none'})")
            return out
        node.online = False
        for name, dev in node.devices.items():
            if dev.online:
                dev.online = False
                out.events.append(Event(f"{edge}.{name}", "OFFLINE", "Sparkplug NDEATH of its edge node",
                                        {"edge_node": edge, "sparkplug_device": name}))
        out.events.append(Event(edge, "OFFLINE", "Sparkplug NDEATH", {"edge_node": edge, "bdSeq": str(bd)}))
        return out

    def _dbirth(self, node: _Node, edge: str, device: str, msg: pb.Decoded, raw: bytes, received_ms: int,
                out: Outcome) -> None:
        me = f"{edge}.{device}"
        if not DEVICE_ID.match(me):
            out.refused = (edge, "sparkplug_bad_device_id", f"device {device!r} of edge node {edge!r} makes "
                           f"the device id {me!r}: at most 64 of A-Z a-z 0-9 . _ -")
            return
        if device not in node.devices and len(node.devices) >= self.max_devices:
            out.refused = (edge, "sparkplug_device_limit", f"edge node {edge!r} already has {len(node.devices)} "
                           f"devices, the limit")
            return
        metrics = _Metrics()
        metrics.learn(msg.metrics)
        node.devices[device] = _Device(metrics)
        out.events.append(Event(me, "ONLINE", "Sparkplug DBIRTH", {"edge_node": edge, "sparkplug_device": device}))
        self._readings(me, metrics, msg, raw, received_ms, out)

    def _check_seq(self, key, node: _Node, msg: pb.Decoded, kind: str, out: Outcome) -> None:
        expected = (node.seq + 1) % 256
        if msg.seq != expected:
            log.warning("sparkplug: %s from %s/%s has seq %s, expected %s: requesting a rebirth", kind, *key,
                        msg.seq, expected)
            out.rebirth = self._may_rebirth(key)
        if msg.seq is not None:
            node.seq = msg.seq % 256

    def _may_rebirth(self, key) -> bool:
        now = self.clock()
        if now - self._last_rebirth.get(key, -REBIRTH_INTERVAL_MS) < REBIRTH_INTERVAL_MS:
            return False
        self._last_rebirth[key] = now
        return True

    def _readings(self, device_id: str, known: _Metrics, msg: pb.Decoded, raw: bytes, received_ms: int,
                  out: Outcome) -> None:
        """Metrics grouped by timestamp into canonical readings, through the same checks as JSON telemetry."""
        items: dict[int, dict] = {}
        rejected: list[Rejected] = []
        default_ts = msg.timestamp if msg.timestamp is not None else received_ms
        for m in msg.metrics:
            name = m.name if m.name is not None else known.aliases.get(m.alias) if m.alias is not None else None
            if name is None:
                rejected.append(Rejected("sparkplug_unknown_alias", f"metric alias {m.alias} was not declared "
                                         "in the birth", raw))
                continue
            if name == BD_SEQ or name.startswith(NODE_CONTROL):
                continue
            dt = m.datatype if m.datatype is not None else known.types.get(name)
            if m.is_null:
                rejected.append(Rejected("sparkplug_null", f"metric {canonical.short(name)} is null", raw))
                continue
            if dt not in SUPPORTED or not m.has_value:
                rejected.append(Rejected("sparkplug_unsupported_type", f"metric {canonical.short(name)} is a "
                                         f"{pb.TYPE_NAMES.get(dt, dt)}: only numbers, booleans and strings "
                                         "are stored", raw))
                continue
            ts = m.timestamp if m.timestamp is not None else default_ts
            items.setdefault(ts, {"ts": ts, "values": {}})["values"][name] = pb.typed_value(dt, m.value)
        readings: list[Reading] = []
        if items:
            readings, bad = canonical.parse_document(list(items.values()), raw, received_ms, self.max_skew_ms)
            rejected += bad
        if readings or rejected:
            out.uplinks.append((device_id, readings, rejected))
