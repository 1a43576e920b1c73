"""The CoAP connector's file (see ``examples/connector.yaml``): where it listens and how much a device may
send. It serves every tenant: each request proves its device with a JWT (adr/0043)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..siteconfig import RateLimit


class CoapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_id: str = "coap"
    host: str = "0.0.0.0"
    port: int | None = Field(None, ge=1, le=65535, description="UDP port; default the platform's coap_port (5683)")
    rate_limit: RateLimit = RateLimit()
