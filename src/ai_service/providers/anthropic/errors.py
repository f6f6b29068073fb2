"""Anthropic's error bodies and stream `error` events, read for the one upstream error map.

Anthropic answers errors with `{"type": "error", "error": {"type", "message"}}`,
and sends the same object as the data of an `error` event in a stream. The
message is read here; what each status becomes is `providers.errors.map_status`,
the map every provider shares. A stream error has no HTTP status of its own, so
its `type` stands for the status Anthropic gives that type.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from ai_service.errors import ServiceError
from ai_service.providers.errors import ErrorDetail, map_status

#: HTTP status Anthropic uses for each error `type`; used for stream `error` events.
ERROR_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


#: Anthropic's error `type` for each status the gateway answers with (others: by class)
STATUS_ERROR_TYPE: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str) -> dict[str, object]:
    """The gateway's own error in Anthropic's shape: `{"type": "error", "error": {...}}`."""
    kind = STATUS_ERROR_TYPE.get(status)
    if kind is None:
        kind = "invalid_request_error" if 400 <= status < 500 else "api_error"
    return {"type": "error", "error": {"type": kind, "message": message}}


def parse_error(payload: object) -> ErrorDetail:
    """The message of an Anthropic error object (None when it has none)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return ErrorDetail(message if isinstance(message, str) and message.strip() else None)


def parse_error_body(body: bytes) -> ErrorDetail:
    """The message of an Anthropic error response body."""
    try:
        return parse_error(orjson.loads(body))
    except orjson.JSONDecodeError:
        return ErrorDetail()


def map_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    provider: str = "claude",
    api_key: str | None = None,
) -> ServiceError:
    """The `ServiceError` the client receives for an Anthropic error response."""
    return map_status(provider, status, parse_error_body(body), headers, api_key)


def map_stream_error(
    payload: object, *, provider: str = "claude", api_key: str | None = None
) -> ServiceError:
    """The `ServiceError` an in-stream `error` event stands for (its type as the status)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    error_type = error.get("type") if isinstance(error, dict) else None
    status = ERROR_TYPE_STATUS.get(error_type, 500) if isinstance(error_type, str) else 500
    return map_status(provider, status, parse_error(payload), {}, api_key)
