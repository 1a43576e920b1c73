"""Fleet simulator: provisioning a simulated fleet and generating its load (``fleetstream simulate``)."""

from .fleet import Fleet, FleetDevice, provision, provision_or_reuse, provision_tenants, register, spread
from .generator import Generator, GeneratorStats
from .payloads import PAYLOADS

__all__ = ["Fleet", "FleetDevice", "Generator", "GeneratorStats", "PAYLOADS", "provision", "provision_or_reuse",
           "provision_tenants", "register", "spread"]
