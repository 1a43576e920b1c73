"""CoAP connector: telemetry and an observable command resource for constrained devices (``fleetstream[coap]``)."""

from .config import CoapConfig

__all__ = ["CoapConfig"]
