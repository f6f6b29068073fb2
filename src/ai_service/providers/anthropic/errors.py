"""Anthropic error bodies and stream `error` events -> the gateway's `ServiceError`s.

Anthropic answers errors with `{"type": "error", "error": {"type", "message"}}`.
The mapping follows DESIGN §9:

    400 invalid_request_error  -> UpstreamStatusError 400   "claude: <upstream message>"
    401 / 403 (credentials)    -> UpstreamError 502         the operator's problem, not the client's
    402 (billing)              -> UpstreamError 502         likewise
    404 not_found_error        -> UpstreamStatusError 404   "claude: <upstream message>"
    413 request_too_large      -> UpstreamStatusError 413
    other 4xx                  -> UpstreamStatusError with the upstream's status
    429 rate_limit_error       -> RateLimitError 429, Retry-After from `retry-after`, retryable
    500 api_error, 502         -> UpstreamError 502, retryable
    503, 529 overloaded_error  -> UpstreamUnavailableError 503, retryable
    504                        -> UpstreamTimeoutError 504, retryable
    other statuses             -> UpstreamError 502, not retried

A 4xx message is the provider's comment on the client's own request, so it is
passed on (prefixed with "claude: "); a 5xx message never quotes the upstream
body. No message ever contains the gateway's key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import orjson

from ai_service.errors import (
    RateLimitError,
    ServiceError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

PREFIX = "claude: "
MAX_MESSAGE_CHARS = 1000

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

CREDENTIALS_MESSAGE = (
    PREFIX + "the provider rejected the gateway's credentials; the operator must check them"
)


def map_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    api_key: str | None = None,
) -> ServiceError:
    """Map an Anthropic error response to the `ServiceError` the client receives."""
    upstream_message = _parse_error_message(body)
    message = _client_message(upstream_message, status, api_key)
    if status in (401, 403):
        return UpstreamError(CREDENTIALS_MESSAGE)
    if status == 402:
        return UpstreamError(PREFIX + "the provider refused the gateway's account (billing)")
    if status == 429:
        return RateLimitError(
            message,
            retry_after=parse_retry_after(headers),
            retryable=True,
        )
    if status == 413:
        return UpstreamStatusError(message, status_code=413, code="request_too_large")
    if 400 <= status < 500:
        return UpstreamStatusError(message, status_code=status)
    if status in (503, 529):
        return UpstreamUnavailableError(PREFIX + "the provider is overloaded", retryable=True)
    if status == 504:
        return UpstreamTimeoutError(PREFIX + "the provider timed out", retryable=True)
    return UpstreamError(
        f"{PREFIX}the provider failed with HTTP {status}",
        retryable=status in (500, 502),
    )


def map_stream_error(payload: object, *, api_key: str | None = None) -> ServiceError:
    """Map the data of an in-stream `error` event (same shape as an error body)."""
    error_type = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            error_type = error["type"]
    status = ERROR_TYPE_STATUS.get(error_type or "", 500)
    return map_error(status, orjson.dumps(payload), {}, api_key=api_key)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a `retry-after` header (delta-seconds or HTTP date), if any."""
    value = _header(headers, "retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _parse_error_message(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message.strip() else None


def _client_message(upstream: str | None, status: int, api_key: str | None) -> str:
    if upstream is None:
        return f"{PREFIX}the provider rejected the request (HTTP {status})"
    if api_key:
        upstream = upstream.replace(api_key, "[redacted]")
    if len(upstream) > MAX_MESSAGE_CHARS:
        upstream = upstream[:MAX_MESSAGE_CHARS] + "..."
    return PREFIX + upstream
