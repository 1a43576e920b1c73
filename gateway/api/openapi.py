"""The OpenAPI document says what every operation can answer (adr/0109). Some answers come from layers
FastAPI does not see when it documents a route: the request guard (400 for NUL in the URL, 413 over the
body limit) and the error handlers (422 in this API's error format, not FastAPI's ``HTTPValidationError``).
They are added here, to every operation, from the same tables the guard enforces."""

from __future__ import annotations

from fastapi import FastAPI

from .request_guard import BodyLimits

ERROR_REF = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
# 409s of control-plane routes whose modules are being reworked in parallel (issue 19), from what
# gateway/admin.py raises; they belong in those routes' responses= once the rework has landed.
KNOWN_ANSWERS = {
    ("post", "/v1/devices/{device_id}/certificates"): {"409": "the device is decommissioned"},
    ("post", "/v1/devices/{device_id}/keys"): {"409": "the device is decommissioned, or the key is registered"},
}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def install(app: FastAPI, limits: BodyLimits) -> None:
    generate = app.openapi  # FastAPI's own, which caches its document in app.openapi_schema

    def openapi() -> dict:
        if app.openapi_schema is None:
            complete(generate(), limits)
        return app.openapi_schema

    app.openapi = openapi


def complete(doc: dict, limits: BodyLimits) -> None:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorResponse", _error_schema())
    schemas.setdefault("ErrorBody", _error_body_schema())
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            limit = limits.limit_for(method.upper(), path)
            op["x-body-limit"] = limit
            responses = op.setdefault("responses", {})
            for status, why in KNOWN_ANSWERS.get((method, path), {}).items():
                responses.setdefault(status, {"description": why, **ERROR_REF})
            responses.setdefault("400", {"description": "malformed request: an unparseable body, NUL in the URL "
                                                        "or a value out of range", **ERROR_REF})
            responses["413"] = {**responses.get("413", ERROR_REF),
                                "description": f"the request body is over this operation's limit of {limit} bytes"}
            if _is_fastapi_422(responses.get("422")) or ("422" not in responses and _takes_input(op)):
                responses["422"] = {"description": "a parameter or body field is invalid; the message names it",
                                    **ERROR_REF}
    for unused in ("HTTPValidationError", "ValidationError"):
        if not _referenced(doc, f"#/components/schemas/{unused}"):
            schemas.pop(unused, None)


def _is_fastapi_422(resp: dict | None) -> bool:
    return bool(resp) and "HTTPValidationError" in str(resp)


def _takes_input(op: dict) -> bool:
    return bool(op.get("parameters") or op.get("requestBody"))


def _referenced(doc: dict, ref: str) -> bool:
    import json

    return f'"{ref}"' in json.dumps(doc)


def _error_body_schema() -> dict:
    return {"title": "ErrorBody", "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string", "title": "Code"},
                           "message": {"type": "string", "title": "Message"}}}


def _error_schema() -> dict:
    return {"title": "ErrorResponse", "type": "object", "required": ["error"],
            "properties": {"error": {"$ref": "#/components/schemas/ErrorBody"}}}
