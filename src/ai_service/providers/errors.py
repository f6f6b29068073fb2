"""Mapping of an upstream's HTTP error status to the gateway's errors (DESIGN §9)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from ai_service.errors import (
    PayloadTooLargeError,
    RateLimitError,
    ServiceError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 529})


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a `Retry-After` (or `retry-after-ms`) header, when it is a number."""
    value = headers.get("retry-after-ms") or headers.get("Retry-After-Ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def upstream_message(body: bytes) -> str | None:
    """The human message of an upstream error body in any of the common shapes."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    for key in ("message", "detail"):
        value = data.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list | dict):
            return orjson.dumps(value).decode()[:500]
    return None


def map_status(
    provider: str, status: int, message: str | None, headers: Mapping[str, str]
) -> ServiceError:
    """The gateway error for an upstream HTTP error status.

    The upstream's own 4xx (the client's request was wrong) is passed on with its
    status and message; a credentials problem is the operator's (502); 429 and
    5xx are retryable. A 5xx body is never shown to the client.
    """
    if status in (401, 403):
        return UpstreamError(
            f"The {provider} provider rejected the gateway's credentials; "
            "contact the gateway operator."
        )
    if status == 413:
        return PayloadTooLargeError(f"{provider}: {message or 'request too large'}")
    if status == 429:
        return RateLimitError(
            f"The {provider} provider is rate limiting requests; retry later.",
            retry_after=retry_after(headers),
            retryable=True,
        )
    if 400 <= status < 500:
        text = message or f"the {provider} provider refused the request"
        return UpstreamStatusError(f"{provider}: {text}", status_code=status)
    if status == 504:
        return UpstreamTimeoutError(f"The {provider} provider timed out.", retryable=True)
    if status in (503, 529):
        return UpstreamUnavailableError(
            f"The {provider} provider is overloaded or unavailable; retry later.",
            retry_after=retry_after(headers),
            retryable=True,
        )
    return UpstreamError(
        f"The {provider} provider failed with HTTP {status}.",
        retryable=status in RETRYABLE_STATUSES,
    )
