"""OPC-UA connector: subscribes to node maps of a site's servers (pip extra ``fleetstream[opcua]``)."""

from .config import OpcUaSiteConfig

__all__ = ["OpcUaSiteConfig"]
