"""What every request passes before routing (adr/0109): a URL without NUL, and a body within its route's
limit. Both are refused here, in the JSON error format, before any handler or dependency runs.

Body limits: ``Content-Length`` over the limit is refused without reading a byte. A body without one
(chunked) or one that is longer than announced is counted as it arrives and refused at limit + 1 bytes.
Bodies of routes with a limit up to ``BUFFER_MAX`` are read completely here before the application sees
them, so even a route that never reads its body does not run for an oversized one; larger (streamed)
bodies — firmware images — are counted while FastAPI's form parser reads them, which also happens before
the handler is called.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUFFER_MAX = 16 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes its limit; FastAPI lets HTTPExceptions through
    its body parsing, and gateway/errors.py renders this one as the JSON 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than this route's limit of {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class BodyLimit:
    method: str
    path: str  # an OpenAPI path template, e.g. /v1/devices/{device_id}
    max_bytes: int

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and _template(self.path).fullmatch(path) is not None


@dataclass(frozen=True)
class BodyLimits:
    default: int
    routes: tuple[BodyLimit, ...] = ()

    def limit_for(self, method: str, path: str) -> int:
        return next((r.max_bytes for r in self.routes if r.matches(method, path)), self.default)


@functools.cache
def _template(path: str) -> re.Pattern:
    return re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)))


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class RequestGuard:
    def __init__(self, app: ASGIApp, *, limits: BodyLimits, buffer_max: int = BUFFER_MAX):
        self.app = app
        self.limits = limits
        self.buffer_max = buffer_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            # Postgres text cannot hold NUL; no identifier or filter of this API contains one (adr/0109)
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await error(400, "invalid_request", "the URL must not contain NUL (%00)")(scope, receive, send)
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        limit = self.limits.limit_for(scope["method"], scope["path"])
        length = _content_length(scope)
        if length is not None and length > limit:
            return await _too_large(limit)(scope, receive, send)
        if limit <= self.buffer_max:
            body, more = [], True
            size = 0
            while more:
                message = await receive()
                if message["type"] != "http.request":  # the client went away
                    return
                size += len(message.get("body", b""))
                if size > limit:
                    return await _too_large(limit)(scope, receive, send)
                body.append(message.get("body", b""))
                more = message.get("more_body", False)
            return await self.app(scope, _replay(b"".join(body), receive), send)
        return await self.app(scope, _counting(receive, limit), send)


def _too_large(limit: int) -> JSONResponse:
    exc = BodyTooLarge(limit)
    return error(413, "body_too_large", exc.detail)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as Starlette expects

    return replay


def _counting(receive: Receive, limit: int) -> Receive:
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLarge(limit)
        return message

    return counted
