"""One error model for every route: ``{"error": {"code": <stable>, "message": <human>}}``."""

from __future__ import annotations

from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.errors import FleetstreamError
from schemas.strict import printable

T = TypeVar("T")


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(FleetstreamError):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def found(row: T | None, what: str) -> T:
    """``row``, or a 404 naming ``what`` when the tenant has no such thing (RLS hides other tenants' rows)."""
    if row is None:
        raise not_found(what)
    return row


def _body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_req: Request, exc: ApiError):
        return JSONResponse(_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(FleetstreamError)
    async def _fs(_req: Request, exc: FleetstreamError):
        return JSONResponse(_body(exc.code, str(exc)), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError):
        # a key of the caller's JSON is part of loc and may hold an unpaired surrogate: keep it encodable
        parts = [printable(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}") for e in exc.errors()]
        return JSONResponse(_body("invalid_request", "; ".join(parts)[:2000]), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException):
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


ERROR_RESPONSES = {
    400: {"model": ErrorResponse, "description": "malformed request: unparseable body, NUL in the URL, bad value"},
    401: {"model": ErrorResponse, "description": "missing, expired or forged token"},
    403: {"model": ErrorResponse, "description": "token lacks the scope this route needs"},
    404: {"model": ErrorResponse, "description": "no such resource for this tenant"},
}


def documented(codes: dict[int, str]) -> dict:
    """``responses=`` for a route's own error answers: ``{409: "why"}`` in the JSON error format."""
    return {status: {"model": ErrorResponse, "description": why} for status, why in codes.items()}
