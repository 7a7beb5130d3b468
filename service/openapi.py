"""OpenAPI 3.1 document, with the reading schema generated from the msgspec model."""

from __future__ import annotations

from typing import Any

import msgspec

from pipeline.reading import Reading
from service.openapi_read import read_paths


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def build_document() -> bytes:
    (reading_ref,), components = msgspec.json.schema_components([Reading], ref_template="#/components/schemas/{name}")
    components["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "path": {"type": "string", "example": "$.value"}},
    }
    errors = {
        "400": _error("malformed JSON"),
        "401": _error("missing or unknown API key (when API_KEYS is set)"),
        "413": _error("body or batch too large"),
        "415": _error("wrong content type"),
        "422": _error("a reading breaks the schema; `path` names the field"),
        "503": _error("Kafka unavailable, delivery not acknowledged or local queue full (see Retry-After)"),
    }
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "Sensor ingest API", "version": "1.0.0"},
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "paths": {
            "/sensor": {
                "post": {
                    "summary": "Ingest one reading",
                    "security": [{}, {"apiKey": []}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": reading_ref}}},
                    "responses": {
                        "202": {"description": "acknowledged by Kafka (or queued, ACK_MODE=enqueued)"},
                        **errors,
                    },
                }
            },
            "/sensor/batch": {
                "post": {
                    "summary": "Ingest a batch, all or nothing",
                    "security": [{}, {"apiKey": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"type": "array", "items": reading_ref}},
                            "application/x-ndjson": {"schema": reading_ref},
                        },
                    },
                    "responses": {"202": {"description": "every reading acknowledged"}, **errors},
                }
            },
            "/healthz": {"get": {"summary": "Process is up", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {
                "get": {
                    "summary": "Kafka reachable and topic present",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of every worker",
                    "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {}}}},
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}
            },
        },
    }
    doc["paths"].update(read_paths())  # type: ignore[attr-defined]
    return msgspec.json.encode(doc)
