"""HTTP ingest for devices: the logic behind the gateway's ``POST /v1/ingest`` (adr/0044)."""

from .auth import CLIENT_CERT_HEADER, DeviceAuthenticator
from .connector import HttpIngestConnector, IngestResult

__all__ = ["HttpIngestConnector", "IngestResult", "DeviceAuthenticator", "CLIENT_CERT_HEADER"]
