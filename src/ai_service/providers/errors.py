"""The one map from an upstream's error status to the gateway's errors, for every provider.

Each adapter reads its provider's error body into an `ErrorDetail` (the
OpenAI-compatible shapes below, Anthropic's in `anthropic/errors.py`); the
status, that detail and the headers then go through `map_status`:

    status              error (status sent to the client)   retried   Retry-After
    401, 403            UpstreamError 502 (credentials)      no        -
    402                 UpstreamError 502 (account balance)  no        -
    413                 PayloadTooLargeError 413             no        -
    429                 RateLimitError 429                   yes       honoured
    other 4xx           UpstreamStatusError, its own status  no        -
    500, 502            UpstreamError 502                    yes       -
    503, 529            UpstreamUnavailableError 503         yes       honoured
    504                 UpstreamTimeoutError 504             yes       -
    any other status    UpstreamError 502                    no        -

A 401/402/403 is the operator's problem (the gateway's key or the provider
account), not the client's. A 4xx message (413's included) is the provider's
comment on the client's own request, so it is passed on, prefixed with the
provider's path name, with the provider's `param` and `code`; the gateway's
key is redacted from it should the provider ever echo it. A 5xx body is never
quoted. `Retry-After` is read in seconds or as an HTTP date (and OpenAI's
`retry-after-ms`), and passed on to the client as whole seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

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
MAX_MESSAGE_CHARS = 1000


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value whatever the case of its name (`name` in lower case)."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, found in headers.items():
        if key.lower() == name:
            return found
    return None


def _seconds(text: str, scale: float = 1.0) -> float | None:
    try:
        value = float(text) / scale
    except ValueError:
        return None
    return max(0.0, value) if math.isfinite(value) else None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` in seconds or as an HTTP date.

    None when neither header is there or readable; a date in the past is 0.
    """
    value = header(headers, "retry-after-ms")
    seconds = _seconds(value.strip(), 1000) if value else None
    if seconds is not None:
        return seconds
    value = header(headers, "retry-after")
    if not value:
        return None
    seconds = _seconds(value.strip())
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """What an upstream error body says: its message, and OpenAI's `param` and `code`."""

    message: str | None = None
    param: str | None = None
    code: str | None = None


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _detail_text(detail: object) -> str | None:
    """A readable summary of a validation `detail` list (Mistral's and FastAPI's 422 bodies).

    Each item's location and message are kept; the offending `input` is not echoed.
    """
    if isinstance(detail, str):
        return detail
    if not isinstance(detail, list):
        return None
    lines: list[str] = []
    for item in detail:
        if not isinstance(item, dict):
            continue
        loc = item.get("loc")
        where = ".".join(str(p) for p in loc if p != "body") if isinstance(loc, list) else ""
        msg = item.get("msg") if isinstance(item.get("msg"), str) else item.get("type")
        lines.append(f"{where}: {msg}" if where else str(msg))
    return "; ".join(lines)[:MAX_MESSAGE_CHARS] or None


def _message_text(value: object) -> str | None:
    """Mistral's `message` is a string, a `{"detail": [...]}` object, or that object as JSON."""
    if isinstance(value, str) and value.startswith("{"):
        text = value
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text[:MAX_MESSAGE_CHARS]
    if isinstance(value, dict):
        return _detail_text(value.get("detail"))
    if isinstance(value, list):
        return _detail_text(value)
    return value if isinstance(value, str) else None


def parse_error_body(body: bytes) -> ErrorDetail:
    """Read an upstream error body in any of the OpenAI-compatible providers' shapes.

    OpenAI, DeepSeek, Together: `{"error": {"message", "type", "param", "code"}}`
    (Together's older bodies name the message `error`); Mistral:
    `{"object": "error", "message": str | {"detail": [...]}, "type", "param", "code"}`,
    `{"detail": [...]}` for a 422 and `{"message": "Unauthorized"}` for a 401.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ErrorDetail()
    if not isinstance(data, dict):
        return ErrorDetail()
    error = data.get("error")
    if isinstance(error, dict):
        message = _text(error.get("message")) or _text(error.get("error"))
        return ErrorDetail(message, _text(error.get("param")), _text(error.get("code")))
    if isinstance(error, str):
        return ErrorDetail(error)
    message = _message_text(data.get("message")) or _detail_text(data.get("detail"))
    return ErrorDetail(message, _text(data.get("param")), _text(data.get("code")))


def redact(text: str, api_key: str | None) -> str:
    """`text` without the gateway's key, should a provider ever echo it."""
    return text.replace(api_key, "[redacted]") if api_key and api_key in text else text


def map_status(
    provider: str,
    status: int,
    detail: ErrorDetail,
    headers: Mapping[str, str],
    api_key: str | None = None,
) -> ServiceError:
    """The gateway error for an upstream HTTP error status and the body's `detail`.

    `provider` is the provider's path name; see the table in the module docstring.
    """
    if status in (401, 402, 403):
        problem = "account balance" if status == 402 else "credentials"
        return UpstreamError(
            f"The {provider} provider rejected the gateway's {problem}; "
            "contact the gateway operator."
        )
    message = redact(detail.message or "", api_key)[:MAX_MESSAGE_CHARS]
    if status == 413:
        return PayloadTooLargeError(
            f"{provider}: {message or 'the request is too large for the provider'}",
            param=detail.param,
        )
    if status == 429:
        return RateLimitError(
            f"The {provider} provider is rate limiting requests; retry later.",
            retry_after=retry_after(headers),
            retryable=True,
        )
    if 400 <= status < 500:
        text = message or f"the {provider} provider refused the request"
        return UpstreamStatusError(
            f"{provider}: {text}", status_code=status, param=detail.param, code=detail.code
        )
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
