"""HTTP ingest: a batch of canonical readings from one authenticated device, answered only after Kafka
confirmed every record (``202``), so a client that got its ``202`` can forget the data."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .. import canonical
from ..base import Admission, ConnectorHealth, ListeningConnector, UplinkContext
from ..errors import ConnectorError, payload_error
from ..uplink import UplinkPublisher, now_ms


class KafkaWriteError(ConnectorError):
    status = 503
    code = "not_stored"


@dataclass
class IngestResult:
    accepted: int
    rejected: list[dict[str, str]] = field(default_factory=list)


class HttpIngestConnector(ListeningConnector):
    """:param max_skew_ms: device timestamps further ahead of the platform clock are rejected."""

    type_name = "http"

    def __init__(self, uplink: UplinkPublisher, admission: Admission | None, *, max_skew_ms: int = 300_000):
        super().__init__(uplink, admission)
        self.max_skew_ms = max_skew_ms

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await asyncio.to_thread(self.uplink.close)

    def health(self) -> ConnectorHealth:
        return ConnectorHealth(True, "ready", dict(self.stats))

    async def ingest(self, tenant_id: str, device_id: str, body: bytes, origin: str = "/v1/ingest") -> IngestResult:
        """Raises a ``ConnectorError`` (dead-lettered first) when nothing of the body can be kept."""
        received = now_ms()
        readings, rejected = canonical.parse(body, received, self.max_skew_ms)
        loop = asyncio.get_running_loop()
        stored: asyncio.Future = loop.create_future()

        def done(err: Exception | None) -> None:  # called from the producer's poll thread
            loop.call_soon_threadsafe(lambda: stored.done() or stored.set_result(err))

        refusal = self.publish_uplink(UplinkContext(tenant_id, device_id, origin, received), body, readings,
                                      rejected, done)
        err = await stored
        if refusal is not None:
            raise refusal
        if err is not None:
            raise KafkaWriteError(f"the readings could not be stored, retry: {err}")
        if not readings:
            raise payload_error(rejected[0].code, rejected[0].reason)
        return IngestResult(len(readings), [{"code": r.code, "reason": r.reason} for r in rejected])
