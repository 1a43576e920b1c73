"""Process settings of the CoAP connector: the shared platform settings plus an optional file."""

from __future__ import annotations

from pathlib import Path

from ..siteconfig import load_site
from .config import CoapConfig


def load_coap_config(path: Path | str) -> CoapConfig:
    return load_site(path, CoapConfig)
