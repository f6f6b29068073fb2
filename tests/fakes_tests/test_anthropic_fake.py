"""FakeAnthropic speaks the Messages API, proven with the official Anthropic SDK."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from tests.fakes import Answer, ErrorReply, FakeAnthropic, ToolCall, Usage, split_fragments
from tests.fakes.anthropic_messages import TOOL_PROMPT_AUTO
from tests.fakes.anthropic_search import RESULT_TOKENS

from .clients import HI, KEY, first_text, post, sse_data

VERSION = {"anthropic-version": "2023-06-01"}
WEATHER: Any = {"name": "get_weather", "input_schema": {"type": "object"}}


def test_default_answer_parses_with_sdk(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="claude-fake-large", max_tokens=100, system="Be brief.", messages=HI
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "claude-fake-large"
    assert message.id.startswith("msg_")
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "Hello from anthropic!")
    ]
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.input_tokens == (3 + 2) + (3 + 2)
    assert message.usage.output_tokens == 3
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0


def test_request_is_recorded_with_headers(
    anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    claude.messages.create(model="claude-fake-small", max_tokens=5, messages=HI)
    record = anthropic_fake.last_request
    assert record.path == "/v1/messages"
    assert "anthropic-version" in record.headers
    assert record.body == {"model": "claude-fake-small", "max_tokens": 5, "messages": HI}
    assert record.status == 200


def test_max_tokens_truncates_with_stop_reason(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="claude-x", max_tokens=2, messages=HI)
    assert first_text(message) == "Hello from"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2


def test_raw_stream_event_sequence(anthropic_fake: FakeAnthropic) -> None:
    body = {"model": "claude-x", "max_tokens": 50, "messages": HI, "stream": True}
    response = post(anthropic_fake, body)
    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    events = [json.loads(d) for d in sse_data(response)]
    assert [e["type"] for e in events] == names
    assert events[0]["message"]["content"] == []
    assert events[0]["message"]["usage"]["input_tokens"] == 5
    assert events[3]["delta"] == {"type": "text_delta", "text": "Hello"}
    assert events[7]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[7]["usage"] == {"output_tokens": 3}


def test_stream_helper_accumulates_the_final_message(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="claude-x", max_tokens=50, messages=HI) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts == ["Hello", " from", " anthropic!"]
    assert first_text(final) == "Hello from anthropic!"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (5, 3)


def test_tool_use_streams_input_json_deltas(
    anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    arguments = json.dumps({"city": "Paris", "unit": "celsius"})
    answer = Answer(text="Checking.", tool_calls=(ToolCall("get_weather", arguments),))
    anthropic_fake.enqueue(answer)
    partials: list[str] = []
    with claude.messages.stream(
        model="claude-x", max_tokens=50, messages=HI, tools=[WEATHER]
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partials.append(event.delta.partial_json)
        final = stream.get_final_message()
    assert len(partials) > 1
    assert "".join(partials) == arguments
    text, tool = final.content
    assert text.type == "text"
    assert tool.type == "tool_use"
    assert tool.name == "get_weather"
    assert tool.input == {"city": "Paris", "unit": "celsius"}
    assert tool.id.startswith("toolu_")
    assert final.stop_reason == "tool_use"


def test_tool_use_without_stream(
    anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    anthropic_fake.enqueue(
        Answer(tool_calls=(ToolCall("get_weather", '{"city": "Rome"}', "toolu_1"),))
    )
    message = claude.messages.create(model="claude-x", max_tokens=50, messages=HI, tools=[WEATHER])
    (block,) = message.content
    assert block.type == "tool_use"
    assert (block.id, block.input) == ("toolu_1", {"city": "Rome"})
    assert message.stop_reason == "tool_use"


def test_cache_usage_and_reasoning(
    anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    usage = Usage(prompt_tokens=20, cached_tokens=1000, cache_creation_tokens=300)
    anthropic_fake.enqueue(Answer(reasoning="Think hard", usage=usage))
    message = claude.messages.create(model="claude-x", max_tokens=50, messages=HI)
    assert message.usage.input_tokens == 20
    assert message.usage.cache_read_input_tokens == 1000
    assert message.usage.cache_creation_input_tokens == 300
    assert message.usage.output_tokens == 2 + 3
    assert [b.type for b in message.content] == ["thinking", "text"]


@pytest.mark.parametrize(
    ("headers", "status", "kind", "message"),
    [
        (VERSION, 401, "authentication_error", "x-api-key header is required"),
        ({"x-api-key": "wrong", **VERSION}, 401, "authentication_error", "invalid x-api-key"),
        ({"x-api-key": KEY}, 400, "invalid_request_error", "anthropic-version: header is required"),
    ],
)
def test_auth_rejections(
    anthropic_fake: FakeAnthropic, headers: dict[str, str], status: int, kind: str, message: str
) -> None:
    response = post(anthropic_fake, {"model": "c", "max_tokens": 5, "messages": HI}, headers)
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error"
    assert body["error"] == {"type": kind, "message": message}
    assert body["request_id"].startswith("req_")


def test_wrong_key_reaches_sdk_as_authentication_error(anthropic_fake: FakeAnthropic) -> None:
    client = anthropic.Anthropic(base_url=anthropic_fake.base_url, api_key="nope", max_retries=0)
    with client, pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="c", max_tokens=5, messages=HI)


GOOD: dict[str, Any] = {"model": "c", "max_tokens": 5, "messages": HI}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {**GOOD, "messages": [{"role": "system", "content": "x"}, *HI]},
            'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
            'parameter, not "system" as an input message role.',
        ),
        (
            {**GOOD, "messages": [{"role": "developer", "content": "x"}, *HI]},
            'messages: Unexpected role "developer". The Messages API accepts a top-level '
            '`system` parameter, not "developer" as an input message role.',
        ),
        ({"model": "c", "messages": HI}, "max_tokens: Field required"),
        ({**GOOD, "max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({**GOOD, "n": 1}, "n: Extra inputs are not permitted"),
        ({**GOOD, "stream_options": {}}, "stream_options: Extra inputs are not permitted"),
        ({**GOOD, "temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
        (
            {**GOOD, "messages": [{"role": "user", "content": ""}]},
            "messages.0: all messages must have non-empty content except for the optional "
            "final assistant message",
        ),
        (
            {**GOOD, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            "messages: text content blocks must be non-empty",
        ),
        (
            {**GOOD, "messages": [*HI, {"role": "assistant", "content": "Sure "}]},
            "messages: final assistant content cannot end with trailing whitespace",
        ),
        (
            {**GOOD, "system": [{"type": "text", "text": ""}]},
            "system: text content blocks must be non-empty",
        ),
    ],
)
def test_rejections_match_anthropic(
    anthropic_fake: FakeAnthropic, body: dict[str, Any], message: str
) -> None:
    response = post(anthropic_fake, body)
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


def test_unknown_block_types_and_bad_images_are_rejected(anthropic_fake: FakeAnthropic) -> None:
    url_part = {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
    response = post(anthropic_fake, {**GOOD, "messages": [{"role": "user", "content": [url_part]}]})
    assert response.status_code == 400
    assert "Input tag 'image_url'" in response.json()["error"]["message"]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AA"}}
    response = post(anthropic_fake, {**GOOD, "messages": [{"role": "user", "content": [image]}]})
    assert response.status_code == 400
    assert "media_type" in response.json()["error"]["message"]
    good_image = {"type": "image", "source": {"type": "url", "url": "http://x/y.png"}}
    messages = [{"role": "user", "content": [good_image, {"type": "text", "text": "What?"}]}]
    assert post(anthropic_fake, {**GOOD, "messages": messages}).status_code == 200


def test_tool_result_must_answer_the_previous_tool_use(anthropic_fake: FakeAnthropic) -> None:
    use = {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_A", "content": "sunny"}
    paired = [*HI, {"role": "assistant", "content": [use]}, {"role": "user", "content": [result]}]
    assert post(anthropic_fake, {**GOOD, "messages": paired}).status_code == 200
    orphan = [*HI, {"role": "assistant", "content": "ok"}, {"role": "user", "content": [result]}]
    response = post(anthropic_fake, {**GOOD, "messages": orphan})
    assert response.status_code == 400
    assert "unexpected `tool_use_id`" in response.json()["error"]["message"]
    unanswered = [*HI, {"role": "assistant", "content": [use]}, *HI]
    response = post(anthropic_fake, {**GOOD, "messages": unanswered})
    assert response.status_code == 400
    assert "without `tool_result` blocks" in response.json()["error"]["message"]


def test_overloaded_529(anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic) -> None:
    anthropic_fake.enqueue(ErrorReply(529))
    with pytest.raises(anthropic.InternalServerError) as caught:
        claude.messages.create(model="c", max_tokens=5, messages=HI)
    assert caught.value.status_code == 529
    body: Any = caught.value.body
    assert body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": body["request_id"],
    }


def test_in_stream_error_event(anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic) -> None:
    anthropic_fake.enqueue(Answer(error_after=1))
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        claude.messages.stream(model="c", max_tokens=50, messages=HI) as stream,
    ):
        texts.extend(stream.text_stream)
    assert texts == ["Hello"]
    assert "overloaded_error" in str(caught.value)


# -- server tools --------------------------------------------------------------------------

SEARCH_TOOL: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
PROMPT = 5 + TOOL_PROMPT_AUTO  # "Say hello" and the tool-use system prompt


def test_a_web_search_tool_makes_the_model_search_first(
    anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    anthropic_fake.enqueue(Answer(text="It is sunny.", web_searches=("weather paris",)))
    message = claude.messages.create(
        model="claude-x", max_tokens=100, messages=HI, tools=[SEARCH_TOOL]
    )
    use, result, text = message.content
    assert use.type == "server_tool_use"
    assert (use.name, use.input) == ("web_search", {"query": "weather paris"})
    assert use.id.startswith("srvtoolu_")
    assert result.type == "web_search_tool_result"
    assert result.tool_use_id == use.id
    assert isinstance(result.content, list)
    assert result.content[0].type == "web_search_result"
    assert text.type == "text"
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 1
    # two samplings: the prompt, then the prompt and the results
    assert message.usage.input_tokens == PROMPT + (PROMPT + RESULT_TOKENS)
    fragments = split_fragments(json.dumps({"query": "weather paris"}))
    assert message.usage.output_tokens == 3 + 1 + len(fragments)


def test_searches_past_max_uses_are_errors_and_are_not_billed(
    anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    anthropic_fake.enqueue(Answer(web_searches=("a", "b", "c")))
    message = claude.messages.create(
        model="claude-x", max_tokens=100, messages=HI, tools=[SEARCH_TOOL]
    )
    results = [b for b in message.content if b.type == "web_search_tool_result"]
    assert [isinstance(r.content, list) for r in results] == [True, True, False]
    error = results[2].content
    assert not isinstance(error, list)
    assert error.error_code == "max_uses_exceeded"
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 2
    assert message.usage.input_tokens == PROMPT + (PROMPT + 1000) + 2 * (PROMPT + 2000)


def test_a_streamed_search_reports_the_loop_usage_at_the_end(
    anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    with claude.messages.stream(
        model="claude-x", max_tokens=100, messages=HI, tools=[SEARCH_TOOL]
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    start = next(e for e in events if e.type == "message_start")
    assert start.message.usage.input_tokens == PROMPT  # the first sampling
    assert [b.type for b in final.content] == ["server_tool_use", "web_search_tool_result", "text"]
    server_use = final.content[0]
    assert server_use.type == "server_tool_use"
    assert server_use.input == {"query": "Say hello"}  # by default: the user's text
    assert final.usage.input_tokens == PROMPT + PROMPT + RESULT_TOKENS
    assert final.usage.server_tool_use is not None
    assert final.usage.server_tool_use.web_search_requests == 1


@pytest.mark.parametrize(
    ("tool", "betas", "message"),
    [
        ({"type": "web_fetch_20250910", "name": "web_fetch"}, "", "web_fetch_20250910"),
        ({"type": "code_execution_20250825", "name": "code_execution"}, "", "code_execution"),
        ({**SEARCH_TOOL, "max_uses": 0}, "", "max_uses"),
        ({"name": "no_schema"}, "", "input_schema"),
    ],
)
def test_tools_anthropic_rejects(
    anthropic_fake: FakeAnthropic, tool: dict[str, Any], betas: str, message: str
) -> None:
    body = {"model": "claude-x", "max_tokens": 10, "messages": HI, "tools": [tool]}
    headers = {"x-api-key": KEY, **VERSION, "anthropic-beta": betas}
    response = post(anthropic_fake, body, headers)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_web_fetch_is_accepted_with_its_beta(anthropic_fake: FakeAnthropic) -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 10,
        "messages": HI,
        "tools": [{"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 1}],
    }
    headers = {"x-api-key": KEY, **VERSION, "anthropic-beta": "web-fetch-2025-09-10"}
    assert post(anthropic_fake, body, headers).status_code == 200
