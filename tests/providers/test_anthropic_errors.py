"""Anthropic error bodies and stream error events through the shared upstream error map."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from ai_service.errors import (
    PayloadTooLargeError,
    RateLimitError,
    ServiceError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ai_service.providers.anthropic.errors import map_error, map_stream_error
from ai_service.providers.errors import retry_after

KEY = "sk-ant-api03-secret-key"


def body(error_type: str, message: str) -> bytes:
    return json.dumps(
        {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_1"}
    ).encode()


@pytest.mark.parametrize(
    ("status", "error_type", "cls", "client_status", "retryable"),
    [
        (400, "invalid_request_error", UpstreamStatusError, 400, False),
        (401, "authentication_error", UpstreamError, 502, False),
        (403, "permission_error", UpstreamError, 502, False),
        (402, "billing_error", UpstreamError, 502, False),
        (404, "not_found_error", UpstreamStatusError, 404, False),
        (409, "conflict", UpstreamStatusError, 409, False),
        (413, "request_too_large", PayloadTooLargeError, 413, False),
        (429, "rate_limit_error", RateLimitError, 429, True),
        (500, "api_error", UpstreamError, 502, True),
        (502, "api_error", UpstreamError, 502, True),
        (503, "api_error", UpstreamUnavailableError, 503, True),
        (529, "overloaded_error", UpstreamUnavailableError, 503, True),
        (504, "timeout_error", UpstreamTimeoutError, 504, True),
        (501, "api_error", UpstreamError, 502, False),
        (302, "odd", UpstreamError, 502, False),
    ],
)
def test_status_mapping(
    status: int, error_type: str, cls: type[ServiceError], client_status: int, retryable: bool
) -> None:
    error = map_error(status, body(error_type, "upstream says no"), {})
    assert type(error) is cls
    assert error.status == client_status
    assert error.retryable is retryable


@pytest.mark.parametrize("status", [400, 404, 409, 413])
def test_4xx_passes_the_upstream_message_with_a_prefix(status: int) -> None:
    error = map_error(status, body("invalid_request_error", "max_tokens: must be positive"), {})
    assert error.message == "claude: max_tokens: must be positive"


def test_413_is_the_clients_request_too_large() -> None:
    error = map_error(413, body("request_too_large", "Request exceeds the maximum size"), {})
    assert isinstance(error, PayloadTooLargeError)
    assert (error.status, error.error_code, error.retryable) == (413, "request_too_large", False)


def test_429_does_not_quote_the_providers_account_limits() -> None:
    error = map_error(429, body("rate_limit_error", "org-123: 40,000 input tokens/min"), {})
    assert "org-123" not in error.message
    assert "claude" in error.message


def test_404_keeps_the_upstream_model_message() -> None:
    error = map_error(404, body("not_found_error", "model: claude-nope"), {})
    assert error.body() == {
        "error": {
            "message": "claude: model: claude-nope",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


@pytest.mark.parametrize("status", [401, 403])
def test_credential_errors_blame_the_gateway_and_leak_nothing(status: int) -> None:
    error = map_error(
        status, body("authentication_error", f"invalid x-api-key {KEY}"), {}, api_key=KEY
    )
    assert "credentials" in error.message
    assert KEY not in error.message
    assert "x-api-key" not in error.message
    assert error.status == 502


@pytest.mark.parametrize("status", [500, 502, 503, 504, 529])
def test_5xx_never_quotes_the_upstream_body(status: int) -> None:
    error = map_error(status, body("api_error", "internal trace at node-17"), {})
    assert "node-17" not in error.message
    assert error.message.startswith("The claude provider ")


def test_the_key_is_redacted_from_a_4xx_message() -> None:
    error = map_error(400, body("invalid_request_error", f"bad header {KEY}"), {}, api_key=KEY)
    assert KEY not in error.message
    assert error.message == "claude: bad header [redacted]"


def test_long_4xx_message_is_truncated() -> None:
    error = map_error(400, body("invalid_request_error", "x" * 5000), {})
    assert len(error.message) < 1100


@pytest.mark.parametrize(
    "raw", [b"<html>502 Bad Gateway</html>", b"", b"[]", b'{"error": "flat"}', body("x", "  ")]
)
def test_unparseable_4xx_body_gets_a_generic_message(raw: bytes) -> None:
    error = map_error(400, raw, {})
    assert error.message == "claude: the claude provider refused the request"
    assert error.status == 400


def test_rate_limit_carries_retry_after_from_the_header() -> None:
    error = map_error(429, body("rate_limit_error", "slow down"), {"Retry-After": "17"})
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 17.0
    assert error.headers() == {"Retry-After": "17"}
    assert map_error(429, body("rate_limit_error", "slow down"), {}).retry_after is None


@pytest.mark.parametrize("status", [503, 529])
def test_overloaded_carries_retry_after_from_the_header(status: int) -> None:
    error = map_error(status, body("overloaded_error", "Overloaded"), {"retry-after": "12"})
    assert isinstance(error, UpstreamUnavailableError)
    assert (error.retry_after, error.headers()) == (12.0, {"Retry-After": "12"})


def test_retry_after_accepts_an_http_date_and_ignores_garbage() -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    seconds = retry_after({"retry-after": format_datetime(when, usegmt=True)})
    assert seconds is not None
    assert 100 < seconds <= 120
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after({"retry-after": past}) == 0.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after": "nan"}) is None
    assert retry_after({"retry-after": "-3"}) == 0.0
    assert retry_after({"x-other": "5"}) is None


@pytest.mark.parametrize(
    ("error_type", "cls", "status"),
    [
        ("overloaded_error", UpstreamUnavailableError, 503),
        ("invalid_request_error", UpstreamStatusError, 400),
        ("authentication_error", UpstreamError, 502),
        ("request_too_large", PayloadTooLargeError, 413),
        ("timeout_error", UpstreamTimeoutError, 504),
    ],
)
def test_stream_error_events_map_by_error_type(
    error_type: str, cls: type[ServiceError], status: int
) -> None:
    error = map_stream_error({"type": "error", "error": {"type": error_type, "message": "m"}})
    assert type(error) is cls
    assert error.status == status


def test_stream_error_without_type_is_a_retryable_upstream_error() -> None:
    error = map_stream_error({"type": "error"})
    assert type(error) is UpstreamError
    assert error.retryable
