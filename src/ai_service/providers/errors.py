"""Upstream error bodies and statuses of the OpenAI-compatible providers -> gateway errors.

The mapping follows DESIGN §9:

    401 / 403 (credentials)   -> UpstreamError 502            the operator's problem
    402 (provider balance)    -> UpstreamError 502            likewise (DeepSeek's 402)
    413                       -> PayloadTooLargeError 413
    429                       -> RateLimitError 429, Retry-After, retryable
    other 4xx                 -> UpstreamStatusError, the upstream's status, message, param, code
    503, 529                  -> UpstreamUnavailableError 503, retryable
    504                       -> UpstreamTimeoutError 504, retryable
    other 5xx                 -> UpstreamError 502 (retryable for 500/502), body never quoted

A 4xx message is the provider's comment on the client's own request, so it is
passed on, prefixed with the provider's name; the gateway's key is redacted
from it should the provider ever echo it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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

    The upstream's own 4xx (the client's request was wrong) is passed on with its
    status, message, `param` and `code`; a credentials or balance problem is the
    operator's (502); 429 and 5xx are retryable. A 5xx body is never shown to the client.
    """
    if status in (401, 402, 403):
        problem = "account balance" if status == 402 else "credentials"
        return UpstreamError(
            f"The {provider} provider rejected the gateway's {problem}; "
            "contact the gateway operator."
        )
    message = redact((detail.message or "")[:MAX_MESSAGE_CHARS], api_key)
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
