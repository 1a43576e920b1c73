"""Process settings of the OPC-UA connector: the shared platform settings plus the site file."""

from __future__ import annotations

from pathlib import Path

from ..siteconfig import load_site
from .config import OpcUaSiteConfig


def load_opcua_site(path: Path | str) -> OpcUaSiteConfig:
    return load_site(path, OpcUaSiteConfig)
