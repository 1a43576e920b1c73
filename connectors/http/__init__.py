"""HTTP ingest for devices: the logic behind the gateway's ``POST /v1/ingest`` (adr/0044).

This package is the one door from the gateway into ``connectors`` (adr/0120): the gateway hosts the HTTP
connector, so everything it needs to run one is exported here and it imports nothing else of ``connectors``."""

from ..base import Admission
from ..errors import ConnectorError
from ..ratelimit import TokenBuckets
from ..registry import ALLOWED_STATUSES
from ..uplink import UplinkPublisher
from .auth import CLIENT_CERT_HEADER, DeviceAuthenticator
from .connector import HttpIngestConnector, IngestResult
from .errors import http_headers

__all__ = ["ALLOWED_STATUSES", "CLIENT_CERT_HEADER", "Admission", "ConnectorError", "DeviceAuthenticator",
           "HttpIngestConnector", "IngestResult", "TokenBuckets", "UplinkPublisher", "http_headers"]
