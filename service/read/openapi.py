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
        "rule": {
            "type": "string",
            "description": "the rule's canonical text, e.g. `greenhouse-*:temperature>40 for 2m clear<38` or"
            " `temperature silent 5m` (docs/contract.md, Alert rules)",
        },
        "sensor_id": {"type": "string"},
        "type": {"type": "string"},
        "state": {"enum": ["active", "cleared"]},
        "raised_at": _TS,
        "raised_value": {"type": "number"},
        "threshold": {"type": "number", "description": "the rule's number; a no-data rule's silence in seconds"},
        "last_at": _TS,
        "last_value": {"type": "number"},
        "cleared_at": _NULL_STR,
        "cleared_value": {"type": ["number", "null"]},
        "acked_at": _NULL_STR,
        "location": _NULL_STR,
        "notifications": NOTIFICATIONS,
    },
}
COMPLETENESS = {
    "type": "object",
    "required": [
        "sensor_id",
        "type",
        "received",
        "missing",
        "missing_count",
        "first_seq",
        "last_seq",
        "duplicates",
    ],
    "properties": {
        "sensor_id": {"type": "string"},
        "type": {"type": "string"},
        "received": {"type": "integer", "minimum": 0, "description": "distinct seq numbers stored"},
        "missing": {
            "type": "array",
            "description": "gaps [from, to] (inclusive) between the first and last seq, oldest first;"
            " at most the newest 1000",
            "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        },
        "missing_count": {"type": "integer", "minimum": 0, "description": "seq numbers in all the gaps"},
        "first_seq": {"type": ["integer", "null"]},
        "last_seq": {"type": ["integer", "null"]},
        "duplicates": {
            "type": "integer",
            "minimum": 0,
            "description": "readings stored under a new timestamp with a seq already received",
        },
    },
}
SENSOR = {
    "type": "object",
    "required": ["sensor_id", "last_seen", "types", "latest"],
    "properties": {
        "sensor_id": {"type": "string"},
        "last_seen": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "when its newest reading arrived at the API (not the device's timestamp)",
        },
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
                "summary": "Sensors with their types and latest reading per type: the fleet's queries",
                "description": "Keyset-paginated for every sort; a filter or sort changed between pages needs a"
                " new first page (a cursor of the other sort is a 400). Unknown parameters are a 400.",
                "parameters": [
                    _param("limit", {**_LIMIT, "maximum": 1000}, "page size (default 100)"),
                    _CURSOR,
                    _param("q", {"type": "string", "maxLength": 64}, "any part of the sensor id (any case)"),
                    _param("type", {"type": "string", "maxLength": 32}, "sensors with a series of this type"),
                    _param(
                        "location",
                        {"type": "string", "maxLength": 64},
                        "sensors with a series whose latest reading is at this location",
                    ),
                    _param(
                        "sort",
                        {"enum": ["sensor_id", "last_seen"]},
                        "sensor_id ascending (default), or last_seen: newest arrival first (ties: id descending)",
                    ),
                    _param(
                        "silent_for",
                        {"type": "string", "pattern": "^[0-9]{1,9}[smhd]$"},
                        "only sensors whose newest reading arrived longer ago than this (30s, 5m, 2h, 7d)",
                    ),
                ],
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
        "/sensors/{sensor_id}/completeness": {
            "get": {
                "summary": "Which seq numbers of a sensor and type arrived: received, gaps, duplicates",
                "parameters": [
                    _SENSOR,
                    {
                        **_param(
                            "type",
                            {"type": "string", "minLength": 1, "maxLength": 32, "pattern": "^[^\\x00]*$"},
                            "the reading type (required)",
                        ),
                        "required": True,
                    },
                ],
                "responses": {
                    "200": _json("the sensor and type's ledger (zeros when it never sent a seq)", COMPLETENESS),
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
