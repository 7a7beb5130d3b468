"""OpenAPI 3.1 document, with the reading schema generated from the msgspec model.

NOTE: the document must tell the truth: schemathesis runs every check of its own against it
and the real API in `make test` (tests/service/test_schemathesis.py), so a status, header or
body the API can answer and this page does not describe fails the build.
"""

from __future__ import annotations

from typing import Any

import msgspec

from pipeline.reading import MAX_LISTED, Reading
from service.read.openapi import read_paths

JSON = "application/json"


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _error(description: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json({"$ref": "#/components/schemas/Error"})}
    if headers:
        response["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    return response


RETRY = "seconds to wait before retrying"

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "path": {"type": "string", "example": "$.value"},
        "errors": {
            "type": "array",
            "maxItems": MAX_LISTED,
            "description": f"a batch's 422: every invalid reading, in order, at most {MAX_LISTED}",
            "items": {
                "type": "object",
                "required": ["path", "error"],
                "properties": {"path": {"type": "string", "example": "$[3].value"}, "error": {"type": "string"}},
            },
        },
        "invalid": {"type": "integer", "minimum": 1, "description": "a batch's 422: how many readings are invalid"},
    },
}


def _post_errors() -> dict[str, Any]:
    return {
        "400": _error("malformed JSON, or a body that does not decompress"),
        "401": _error("missing or unknown API key or device token (when API_KEYS or DEVICE_TOKENS_FILE is set)"),
        "403": _error("the device token may not write this sensor; nothing of the request was produced"),
        "408": _error("the body did not arrive within API_BODY_TIMEOUT_MS", Connection="close"),
        "413": _error("body (compressed or decompressed) or batch too large"),
        "415": _error("unsupported Content-Type or Content-Encoding"),
        "422": _error(
            "a reading breaks the schema, or its timestamp is more than MAX_FUTURE_SKEW_S (300 s) ahead of the"
            " API's clock (`$.timestamp`; past timestamps are accepted); `path` names the field (a batch lists"
            " them all in `errors`)"
        ),
        "429": _error("rate limit (RATE_LIMIT_RPS) exceeded", **{"Retry-After": RETRY}),
        "431": _error("request line and headers over API_MAX_HEADER_BYTES", Connection="close"),
        "503": _error(
            "Kafka unavailable, delivery not acknowledged, queue full or overloaded", **{"Retry-After": RETRY}
        ),
    }


# NOTE: Content-Encoding is described in prose, not as a header parameter: a parameter would
# tell clients (and schemathesis) that any body may carry `Content-Encoding: gzip` as it is,
# where the header means the body is compressed; the schemas describe the decompressed body.
BODY = (
    "The body may be compressed: `Content-Encoding: gzip`, `deflate` or `zstd` (or `identity`); any other"
    " coding gets 415. MAX_BODY_BYTES applies to the body as sent and again to the decompressed body."
)


SECURITY: list[dict[str, list[str]]] = [{}, {"apiKey": []}, {"deviceToken": []}]


def build_document() -> bytes:
    (reading_ref,), components = msgspec.json.schema_components([Reading], ref_template="#/components/schemas/{name}")
    components["Error"] = ERROR
    accepted_one = {
        "oneOf": [
            {
                "type": "object",
                "required": ["status", "partition", "offset"],
                "properties": {
                    "status": {"const": "accepted"},
                    "partition": {"type": "integer", "minimum": 0},
                    "offset": {"type": ["integer", "null"], "minimum": 0},
                },
            },
            {"type": "object", "required": ["status"], "properties": {"status": {"const": "queued"}}},
        ]
    }
    accepted_batch = {
        "type": "object",
        "required": ["accepted"],
        "properties": {"accepted": {"type": "integer", "minimum": 1}},
    }
    status: dict[str, Any] = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "Sensor ingest API", "version": "1.0.0"},
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "deviceToken": {"type": "http", "scheme": "bearer", "description": "a token of DEVICE_TOKENS_FILE"},
            },
        },
        "paths": {
            "/sensor": {
                "post": {
                    "summary": "Ingest one reading",
                    "security": SECURITY,
                    "requestBody": {"required": True, "description": BODY, "content": _json(reading_ref)},
                    "responses": {
                        "202": {
                            "description": "acknowledged by Kafka (or queued, ACK_MODE=enqueued)",
                            "content": _json(accepted_one),
                        },
                        **_post_errors(),
                    },
                }
            },
            "/sensor/batch": {
                "post": {
                    "summary": "Ingest a batch, all or nothing",
                    "security": SECURITY,
                    "requestBody": {
                        "required": True,
                        "description": BODY,
                        "content": {
                            JSON: {"schema": {"type": "array", "items": reading_ref, "minItems": 1}},
                            "application/x-ndjson": {"schema": reading_ref},
                        },
                    },
                    "responses": {
                        "202": {"description": "every reading acknowledged", "content": _json(accepted_batch)},
                        **_post_errors(),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Process is up",
                    "responses": {"200": {"description": "ok", "content": _json(status)}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Kafka reachable and topic present",
                    "responses": {
                        "200": {"description": "ready", "content": _json(status)},
                        "503": {
                            "description": "not ready",
                            "headers": {"Retry-After": {"description": RETRY, "schema": {"type": "string"}}},
                            "content": _json(
                                {**status, "properties": {**status["properties"], "error": {"type": "string"}}}
                            ),
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of every worker",
                    "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {}}}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1", "content": _json({"type": "object"})}},
                }
            },
        },
    }
    doc["paths"].update(read_paths())  # type: ignore[attr-defined]
    return msgspec.json.encode(doc)
