"""Connector refusals → CoAP response codes (RFC 7252, 4.29 from RFC 8516)."""

from __future__ import annotations

from aiocoap import Code

from ..errors import ConnectorError

BY_STATUS = {400: Code.BAD_REQUEST, 401: Code.UNAUTHORIZED, 403: Code.FORBIDDEN, 404: Code.NOT_FOUND,
             413: Code.REQUEST_ENTITY_TOO_LARGE, 429: Code.TOO_MANY_REQUESTS, 503: Code.SERVICE_UNAVAILABLE}


def coap_code(err: ConnectorError) -> Code:
    return BY_STATUS.get(err.status, Code.INTERNAL_SERVER_ERROR)
