"""Process settings of the Modbus connector: the shared platform settings plus the site file."""

from __future__ import annotations

from pathlib import Path

from ..siteconfig import load_site
from .config import ModbusSiteConfig


def load_modbus_site(path: Path | str) -> ModbusSiteConfig:
    return load_site(path, ModbusSiteConfig)
