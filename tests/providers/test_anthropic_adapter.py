"""AnthropicAdapter: the Adapter protocol, wiring URL, headers and clock."""

from __future__ import annotations

import json

import orjson
import pytest

from ai_service.errors import InvalidRequestError, UpstreamUnavailableError
from ai_service.providers.anthropic import ANTHROPIC_VERSION, AnthropicAdapter
from ai_service.providers.anthropic.request import to_anthropic_request
from ai_service.providers.base import Adapter, ChatRequest, ProviderConfig

KEY = "sk-ant-test-key"


def config(
    *,
    base_url: str = "https://api.anthropic.com/",
    api_key: str | None = KEY,
    extra_headers: dict[str, str] | None = None,
) -> ProviderConfig:
    return ProviderConfig(
        name="claude",
        base_url=base_url,
        api_key=api_key,
        key_variable="ANTHROPIC_API_KEY",
        extra_headers=extra_headers or {},
    )


def request(stream: bool = False) -> ChatRequest:
    body = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}], "seed": 3}
    return ChatRequest(body=body, model="claude-sonnet-4-5", stream=stream, max_output_tokens=321)


def test_adapter_satisfies_the_protocol_and_is_named_claude() -> None:
    adapter: Adapter = AnthropicAdapter(config())
    assert adapter.name == "claude"


@pytest.mark.parametrize(
    "base_url",
    ["https://api.anthropic.com", "https://api.anthropic.com/", "https://api.anthropic.com//"],
)
def test_url_appends_v1_messages_to_the_base_url(base_url: str) -> None:
    upstream = AnthropicAdapter(config(base_url=base_url)).build_request(request())
    assert upstream.url == "https://api.anthropic.com/v1/messages"


def test_headers_carry_the_key_version_and_extra_headers() -> None:
    extra = {"anthropic-beta": "context-1m-2025-08-07"}
    upstream = AnthropicAdapter(config(extra_headers=extra)).build_request(request())
    assert upstream.headers == {
        "x-api-key": KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "anthropic-beta": "context-1m-2025-08-07",
    }
    assert ANTHROPIC_VERSION == "2023-06-01"


def test_body_is_the_translated_request_as_json_bytes() -> None:
    req = request(stream=True)
    upstream = AnthropicAdapter(config()).build_request(req)
    assert isinstance(upstream.body, bytes)
    assert orjson.loads(upstream.body) == to_anthropic_request(
        req.body, model="claude-sonnet-4-5", max_tokens=321, stream=True
    )
    assert json.loads(upstream.body)["max_tokens"] == 321


def test_missing_key_is_a_503_naming_the_variable() -> None:
    with pytest.raises(UpstreamUnavailableError) as info:
        AnthropicAdapter(config(api_key=None)).build_request(request())
    assert info.value.status == 503
    assert "ANTHROPIC_API_KEY" in info.value.message


def test_untranslatable_body_is_a_400() -> None:
    req = request()
    req.body["messages"] = [{"role": "user", "content": [{"type": "input_audio"}]}]
    with pytest.raises(InvalidRequestError):
        AnthropicAdapter(config()).build_request(req)


def test_created_comes_from_the_clock_in_responses_and_streams() -> None:
    adapter = AnthropicAdapter(config(), clock=lambda: 1700000000.9)
    data = {"type": "message", "id": "msg_1", "content": [{"type": "text", "text": "hi"}]}
    assert adapter.parse_response(data, request()).completion["created"] == 1700000000
    start = {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 1}}}
    [event] = adapter.stream_parser(request(stream=True)).feed(None, json.dumps(start))
    assert event.chunk is not None
    assert event.chunk["created"] == 1700000000
    assert event.chunk["model"] == "claude-sonnet-4-5"


def test_map_error_redacts_the_configured_key() -> None:
    body = json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": KEY}})
    error = AnthropicAdapter(config()).map_error(400, body.encode(), {})
    assert KEY not in error.message
