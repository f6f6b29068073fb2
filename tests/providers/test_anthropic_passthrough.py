"""The Messages API passed through: forwarded headers, the relay parser, error bodies."""

from __future__ import annotations

import orjson
import pytest

from ai_service.errors import RateLimitError, UpstreamError
from ai_service.providers.anthropic.errors import error_body
from ai_service.providers.anthropic.passthrough import (
    DEFAULT_VERSION,
    MessagesRelayParser,
    forwarded_headers,
)
from ai_service.providers.base import Usage
from ai_service.services.messages import encoded


def test_the_version_defaults_and_only_allowed_betas_are_forwarded() -> None:
    assert forwarded_headers(None, None) == ({"anthropic-version": DEFAULT_VERSION}, [])
    headers, dropped = forwarded_headers(
        "2024-01-01", "prompt-caching-2024-07-31, context-1m-2025-08-07,,files-api-2025-04-14"
    )
    assert headers == {
        "anthropic-version": "2024-01-01",
        "anthropic-beta": "prompt-caching-2024-07-31",
    }
    assert dropped == ["context-1m-2025-08-07", "files-api-2025-04-14"]


def event(name: str, payload: dict[str, object]) -> tuple[str, str]:
    return name, orjson.dumps(payload).decode()


START = event(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 30,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 10,
                    "ephemeral_1h_input_tokens": 20,
                },
                "output_tokens": 1,
            },
        },
    },
)


def test_events_are_relayed_as_their_bytes_and_usage_is_read() -> None:
    parser = MessagesRelayParser()
    (start,) = parser.feed(*START)
    assert start.frame == f"event: message_start\ndata: {START[1]}\n\n".encode()
    early = Usage(
        input_tokens=10,
        cache_read_tokens=100,
        cache_write_tokens=30,
        cache_write_1h_tokens=20,
        output_tokens=1,
    )
    assert (start.early_usage, start.usage) == (early, None)
    delta = event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    )
    (relayed,) = parser.feed(*delta)
    assert relayed.frame.startswith(b"event: content_block_delta\ndata: {")
    assert (relayed.usage, relayed.early_usage) == (None, None)
    (ping,) = parser.feed("ping", '{"type": "ping"}')
    assert ping.frame == b'event: ping\ndata: {"type": "ping"}\n\n'
    final = event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 7},
        },
    )
    (end,) = parser.feed(*final)
    assert end.usage is not None
    assert (end.usage.output_tokens, end.usage.cache_write_1h_tokens) == (7, 20)
    assert parser.stop_reason == "end_turn"
    assert not parser.done
    parser.feed("message_stop", '{"type": "message_stop"}')
    assert parser.done
    assert parser.feed("ping", "{}") == []


def test_the_output_is_read_from_the_deltas_only_when_asked() -> None:
    parser = MessagesRelayParser()
    for delta in (
        {"type": "text_delta", "text": "Hel"},
        {"type": "thinking_delta", "thinking": "hmm"},
        {"type": "input_json_delta", "partial_json": '{"a"'},
        {"type": "text_delta", "text": "lo"},
    ):
        parser.feed(*event("content_block_delta", {"type": "content_block_delta", "delta": delta}))
    parser.feed(
        None, '{"type": "content_block_delta", "delta": {"type": "text_delta", "text": "!"}}'
    )
    parser.deltas.append("not json")
    parser.deltas.append('{"delta": 3}')
    assert parser.output() == ("Hello!", 'hmm{"a"')


def test_unnamed_and_multiline_events_keep_their_sse_form() -> None:
    (unnamed,) = MessagesRelayParser().feed(None, '{"type": "ping"}')
    assert unnamed.frame == b'data: {"type": "ping"}\n\n'
    (lines,) = MessagesRelayParser().feed("ping", '{"type":\n"ping"}')
    assert lines.frame == b'event: ping\ndata: {"type":\ndata: "ping"}\n\n'


def test_an_error_event_raises_the_mapped_error() -> None:
    parser = MessagesRelayParser(api_key="k")
    with pytest.raises(RateLimitError):
        parser.feed(
            *event(
                "error",
                {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
            )
        )
    with pytest.raises(UpstreamError):
        MessagesRelayParser().feed("message_delta", "{not json")
    with pytest.raises(UpstreamError):
        MessagesRelayParser().feed("message_start", "[1]")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (409, "invalid_request_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (502, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
        (599, "api_error"),
    ],
)
def test_gateway_errors_take_anthropic_types(status: int, kind: str) -> None:
    assert error_body(status, "why") == {"type": "error", "error": {"type": kind, "message": "why"}}


def test_the_body_is_reencoded_only_for_a_changed_model_or_limit() -> None:
    raw = b'{"model": "m",  "max_tokens": 5000, "messages": []}'
    body = orjson.loads(raw)
    assert encoded(raw, body, "m", 5000) is raw
    assert orjson.loads(encoded(raw, body, "m-2025", 5000))["model"] == "m-2025"
    thinking = {**body, "thinking": {"type": "enabled", "budget_tokens": 4000}}
    lowered = orjson.loads(encoded(raw, thinking, "m", 3000))
    assert (lowered["max_tokens"], lowered["thinking"]["budget_tokens"]) == (3000, 2999)
    # below Anthropic's least budget the budget is left for Anthropic to refuse
    assert orjson.loads(encoded(raw, thinking, "m", 1000))["thinking"]["budget_tokens"] == 4000
