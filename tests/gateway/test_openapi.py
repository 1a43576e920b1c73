"""The gateway's OpenAPI document is valid OpenAPI 3.1 and says what each operation can answer: 400 (NUL in
the URL, an unparseable body), 413 with the operation's body limit, 422 in this API's error format (not
FastAPI's HTTPValidationError). Built from the app itself; no stack needed."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from gateway.api.main import BODY_LIMITS
from gateway.app import create_app
from runtime.settings import Settings

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def doc(tmp_path_factory) -> dict:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi"))).openapi()


def _operations(doc: dict):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_the_document_is_valid_openapi(doc):
    validate(doc)  # raises with the JSON path of the first problem


def test_every_operation_documents_400_413_and_a_422_in_the_error_format(doc):
    error_ref = "#/components/schemas/ErrorResponse"
    for path, method, op in _operations(doc):
        where = f"{method.upper()} {path}"
        for status in ("400", "413"):
            assert op["responses"][status]["content"]["application/json"]["schema"]["$ref"] == error_ref, where
        if op.get("parameters") or op.get("requestBody"):
            assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"] == error_ref, where
        assert op["x-body-limit"] == BODY_LIMITS.limit_for(method.upper(), path), where
        assert str(op["x-body-limit"]) in op["responses"]["413"]["description"], where
    assert "HTTPValidationError" not in str(doc)


def test_larger_limits_for_firmware_csv_import_and_bulk(doc):
    default = BODY_LIMITS.default
    assert doc["paths"]["/v1/devices"]["post"]["x-body-limit"] == default
    for path in ("/v1/firmware", "/v1/devices/import", "/v1/devices/bulk"):
        assert doc["paths"][path]["post"]["x-body-limit"] > default, path


def test_command_history_is_a_plain_array_schema(doc):
    history = doc["components"]["schemas"]["CommandOut"]["properties"]["history"]
    assert history["type"] == "array"
    pair = history["items"]
    assert pair["type"] == "array" and pair["minItems"] == pair["maxItems"] == 2
    assert "prefixItems" not in str(history)


def test_strict_text_fields_say_no_nul_in_the_schema(doc):
    rule = doc["components"]["schemas"]["RuleIn"]["properties"]["name"]
    assert rule["pattern"] == "^[^\\x00]*$"
