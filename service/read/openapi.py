"""The read side's part of the OpenAPI document (service/openapi.py merges it in)."""

from __future__ import annotations

from typing import Any

from pipeline.reading import SENSOR_ID_CHARS, SENSOR_ID_MAX

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema or _ERROR}}}


def _param(name: str, schema: dict[str, Any], description: str, where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema, "description": description}


_TS = {"type": "string", "format": "date-time"}
_NULL_STR = {"type": ["string", "null"]}
_LIMIT = {"type": "integer", "minimum": 1}
_CURSOR = _param("cursor", {"type": "string"}, "next_cursor of the previous page")
_SENSOR = _param(
    "sensor_id", {"type": "string", "pattern": f"^[{SENSOR_ID_CHARS}]{{1,{SENSOR_ID_MAX}}}$"}, "the sensor", "path"
)
_TYPE = _param("type", {"type": "string", "maxLength": 32}, "only this reading type")
_FROM = _param("from", _TS, "from this time (inclusive), RFC 3339 with a zone")
_TO = _param("to", _TS, "until this time (exclusive), RFC 3339 with a zone")


def _list(item: dict[str, Any], **extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {"items": {"type": "array", "items": item}, "next_cursor": _NULL_STR, **extra},
    }


READING = {
    "type": "object",
    "required": ["type", "timestamp", "value"],
    "properties": {
        "type": {"type": "string"},
        "timestamp": _TS,
        "value": {"type": "number"},
        "unit": _NULL_STR,
        "location": _NULL_STR,
    },
}
AGGREGATE = {
    "type": "object",
    "required": ["type", "start", "count", "min", "max", "avg"],
    "properties": {
        "type": {"type": "string"},
        "start": _TS,
        "count": {"type": "integer"},
        "min": {"type": "number"},
        "max": {"type": "number"},
        "avg": {"type": "number"},
    },
}
# The alert's webhook deliveries (docs/contract.md, "Webhook notifications"); null: none queued.
NOTIFICATIONS = {
    "type": ["object", "null"],
    "required": ["state", "deliveries", "pending", "attempts", "last_error"],
    "properties": {
        "state": {"enum": ["pending", "sent", "failed"]},
        "deliveries": {"type": "integer", "minimum": 1},
        "pending": {"type": "integer", "minimum": 0},
        "attempts": {"type": "integer", "minimum": 0},
        "last_error": _NULL_STR,
    },
}
ALERT = {
    "type": "object",
    "required": [
        "id",
        "rule",
        "sensor_id",
        "type",
        "state",
        "raised_at",
        "raised_value",
        "threshold",
        "last_at",
        "last_value",
    ],
    "properties": {
        "id": {"type": "string"},
        "rule": {"type": "string"},
        "sensor_id": {"type": "string"},
        "type": {"type": "string"},
        "state": {"enum": ["active", "cleared"]},
        "raised_at": _TS,
        "raised_value": {"type": "number"},
        "threshold": {"type": "number"},
        "last_at": _TS,
        "last_value": {"type": "number"},
        "cleared_at": _NULL_STR,
        "cleared_value": {"type": ["number", "null"]},
        "acked_at": _NULL_STR,
        "location": _NULL_STR,
        "notifications": NOTIFICATIONS,
    },
}
SENSOR = {
    "type": "object",
    "required": ["sensor_id", "types", "latest"],
    "properties": {
        "sensor_id": {"type": "string"},
        "types": {"type": "array", "items": {"type": "string"}},
        "latest": {"type": "object", "additionalProperties": {"type": "object"}},
    },
}

_UNAVAILABLE = _json("the store cannot be read yet, or SINK=console keeps none")
_BAD = _json("a bad parameter, named in the message")
_NOT_FOUND = _json("unknown sensor or alert")


def read_paths() -> dict[str, Any]:
    sensor_id = {"sensor_id": {"type": "string"}}
    return {
        "/sensors": {
            "get": {
                "summary": "Sensors with their types and latest reading per type (sensor_id ascending)",
                "parameters": [_param("limit", {**_LIMIT, "maximum": 1000}, "page size (default 100)"), _CURSOR],
                "responses": {"200": _json("a page of sensors", _list(SENSOR)), "400": _BAD, "503": _UNAVAILABLE},
            }
        },
        "/sensors/{sensor_id}/readings": {
            "get": {
                "summary": "Raw readings of a sensor, newest first",
                "parameters": [
                    _SENSOR,
                    _TYPE,
                    _FROM,
                    _TO,
                    _param("limit", {**_LIMIT, "maximum": 10000}, "default 100"),
                    _CURSOR,
                ],
                "responses": {
                    "200": _json("a page of readings", _list(READING, sensor_id=sensor_id["sensor_id"])),
                    "400": _BAD,
                    "404": _NOT_FOUND,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/sensors/{sensor_id}/aggregates": {
            "get": {
                "summary": "count/min/max/avg per bucket, rolled up from the one-minute aggregates, oldest first",
                "parameters": [
                    _SENSOR,
                    _TYPE,
                    _param("from", _TS, "default: 24 h before `to`"),
                    _param("to", _TS, "default: now"),
                    _param("bucket", {"enum": ["1m", "5m", "1h", "1d"]}, "default 5m"),
                    _param("limit", {**_LIMIT, "maximum": 10000}, "default 1000"),
                    _CURSOR,
                ],
                "responses": {
                    "200": _json(
                        "a page of buckets", _list(AGGREGATE, sensor_id={"type": "string"}, bucket={"type": "string"})
                    ),
                    "400": _BAD,
                    "404": _NOT_FOUND,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/alerts": {
            "get": {
                "summary": "Alerts, newest raised first",
                "parameters": [
                    _param("state", {"enum": ["active", "cleared", "all"]}, "default active"),
                    _param("sensor_id", {"type": "string", "maxLength": 64}, "only this sensor"),
                    _param("limit", {**_LIMIT, "maximum": 1000}, "default 100"),
                    _CURSOR,
                ],
                "responses": {"200": _json("a page of alerts", _list(ALERT)), "400": _BAD, "503": _UNAVAILABLE},
            }
        },
        "/alerts/{alert_id}/ack": {
            "post": {
                "summary": "Acknowledge an alert (idempotent: the first acknowledgement's time is kept)",
                "security": [{}, {"apiKey": []}],
                "parameters": [_param("alert_id", {"type": "string"}, "the alert", "path")],
                "responses": {
                    "200": _json("the alert", ALERT),
                    "401": _json("missing or unknown API key (when API_KEYS is set)"),
                    "404": _NOT_FOUND,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/stream": {
            "get": {
                "summary": "Server-Sent Events: `reading` and `alert` events as Kafka gets them; Last-Event-ID resumes",
                "parameters": [
                    _param("sensor_id", {"type": "string", "maxLength": 64}, "only this sensor"),
                    _param("type", {"type": "string", "maxLength": 32}, "only this type"),
                ],
                "responses": {
                    "200": {"description": "an endless event stream", "content": {"text/event-stream": {}}},
                    "400": _BAD,
                    "503": _json("Kafka unreachable"),
                },
            }
        },
        "/pipeline": {
            "get": {
                "summary": "Pipeline health over the last seconds: rates, e2e p50/p99, lag, workers, DLQ",
                "responses": {"200": _json("health figures", {"type": "object"})},
            }
        },
    }
