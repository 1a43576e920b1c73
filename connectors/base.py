"""The one small contract every protocol connector implements (adr/0006 for the full shape).

The runtime (``fleetstream connector run KIND``, or the local stack) only calls ``start``, ``stop`` and
``health``. Records leave a connector only through its ``UplinkPublisher`` (telemetry, device events,
dead letters); commands reach it through ``deliver_command`` where the protocol supports downlink.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .uplink import UplinkPublisher


@dataclass
class ConnectorHealth:
    healthy: bool
    detail: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


class BaseConnector(abc.ABC):
    """Subclasses set ``type_name`` and implement ``start``/``stop``/``health``.

    :param uplink: where records go; constructed by the process entry point from settings.
    """

    type_name: ClassVar[str]

    def __init__(self, uplink: UplinkPublisher):
        self.uplink = uplink

    @abc.abstractmethod
    def start(self) -> None:
        """Connect to the peer(s) and begin emitting records. Returns once running."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop taking input, flush what was accepted to Kafka, disconnect."""

    @abc.abstractmethod
    def health(self) -> ConnectorHealth:
        """Cheap, non-blocking: is the connector connected and moving data?"""

    def deliver_command(self, command: dict[str, Any]) -> bool:
        """Deliver a ``schemas/avro/command.avsc`` record to its device; False if this protocol cannot."""
        return False
