"""The Messages API translated to and from chat completions: pure functions, worked examples."""

from __future__ import annotations

from typing import Any

import pytest

from ai_service.errors import InvalidRequestError
from ai_service.translate.messages import effort_of, prompt, to_chat

MODEL = "gpt-5.4-mini"
HELLO = [{"role": "user", "content": "Hello"}]
DOC_BLOCK = {"type": "document", "source": {"type": "text", "data": "x"}}
WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    "cache_control": {"type": "ephemeral"},
}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 100, "messages": HELLO, **fields}


def refused(request: dict[str, Any]) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        to_chat(request)
    assert caught.value.param is not None
    assert caught.value.message.startswith(caught.value.param)
    return caught.value


def test_a_plain_request_becomes_a_chat_body() -> None:
    translated = to_chat(body(temperature=0.3, top_p=0.9, stop_sequences=["END"]))
    assert (translated.model, translated.limit, translated.stream) == (MODEL, 100, False)
    assert translated.body == {
        "model": MODEL,
        "messages": HELLO,
        "max_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["END"],
    }


def test_a_stream_asks_for_its_usage() -> None:
    translated = to_chat(body(stream=True))
    assert translated.stream is True
    assert translated.body["stream"] is True
    assert translated.body["stream_options"] == {"include_usage": True}


def test_the_system_prompt_comes_first_without_its_cache_control() -> None:
    system = [
        {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Answer in French."},
    ]
    chat = to_chat(body(system=system, cache_control={"type": "ephemeral"})).body
    assert chat["messages"] == [
        {"role": "system", "content": "You are terse.\n\nAnswer in French."},
        *HELLO,
    ]
    assert to_chat(body(system="Be brief.")).body["messages"][0] == {
        "role": "system",
        "content": "Be brief.",
    }


def test_images_become_image_url_parts() -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "What are these?"},
    ]
    chat = to_chat(body(messages=[{"role": "user", "content": content}])).body
    assert chat["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {"type": "text", "text": "What are these?"},
            ],
        }
    ]


def test_a_tool_round_trip_becomes_tool_calls_and_tool_messages() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Two cities.", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xyz"},
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "no data"}],
                    "is_error": True,
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    chat = to_chat(body(messages=messages, tools=[WEATHER])).body
    assert chat["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no data"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Weather of a city",
            },
        }
    ]


def test_an_assistant_turn_of_tool_calls_only_has_no_content() -> None:
    use = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    messages = [
        *HELLO,
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
    ]
    chat = to_chat(body(messages=messages)).body
    assert chat["messages"][1]["content"] is None
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": "toolu_1", "content": ""}
    assert len(chat["messages"]) == 3  # a user turn of tool results only is the tool messages


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            {
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "parallel_tool_calls": False,
            },
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    chat = to_chat(body(tools=[WEATHER], tool_choice=choice)).body
    assert {k: chat[k] for k in ("tool_choice", "parallel_tool_calls") if k in chat} == expected


def test_a_tool_choice_without_tools_is_not_sent() -> None:
    chat = to_chat(body(tool_choice={"type": "any"})).body
    assert "tool_choice" not in chat and "tools" not in chat


def test_metadata_user_id_is_the_user() -> None:
    assert to_chat(body(metadata={"user_id": "u-42"})).body["user"] == "u-42"
    assert "user" not in to_chat(body(metadata={"user_id": None})).body


@pytest.mark.parametrize(
    ("budget", "effort"),
    [(1024, "low"), (4095, "low"), (4096, "medium"), (16383, "medium"), (16384, "high")],
)
def test_a_thinking_budget_is_a_reasoning_effort(budget: int, effort: str) -> None:
    assert effort_of(budget) == effort
    thinking = {"type": "enabled", "budget_tokens": budget, "display": "summarized"}
    assert to_chat(body(thinking=thinking)).body["reasoning_effort"] == effort


def test_thinking_disabled_or_adaptive_leaves_the_effort_to_the_model() -> None:
    for kind in ("disabled", "adaptive"):
        assert "reasoning_effort" not in to_chat(body(thinking={"type": kind})).body


def test_output_config_effort_wins_over_the_budget() -> None:
    thinking = {"type": "enabled", "budget_tokens": 2000}
    chat = to_chat(body(thinking=thinking, output_config={"effort": "max"})).body
    assert chat["reasoning_effort"] == "high"


def test_service_tier_and_nulls_are_without_effect() -> None:
    chat = to_chat(body(service_tier="auto", top_k=None, container=None)).body
    assert set(chat) == {"model", "messages", "max_tokens"}


def test_context_management_is_without_effect() -> None:
    # Claude Code sends it with every request; the provider bills the conversation as sent
    edits = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
    chat = to_chat(body(context_management=edits)).body
    assert set(chat) == {"model", "messages", "max_tokens"}


def test_a_system_message_in_the_conversation_stays_in_its_place() -> None:
    # Claude Code sends instructions as `system` messages between the turns
    messages = [
        *HELLO,
        {
            "role": "system",
            "content": [{"type": "text", "text": "Agents:"}, {"type": "text", "text": "a, b"}],
        },
        {"role": "assistant", "content": "Hi"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Go on"},
    ]
    chat = to_chat(body(messages=messages)).body
    assert chat["messages"] == [
        {"role": "user", "content": "Hello"},
        {"role": "system", "content": "Agents:\n\na, b"},
        {"role": "assistant", "content": "Hi"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Go on"},
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_k": 5}, "top_k"),
        ({"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}, "mcp_servers"),
        ({"container": "c1"}, "container"),
        ({"speed": "fast"}, "speed"),
        ({"x_unknown": 1}, "x_unknown"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0]"),
        ({"tools": [{**WEATHER, "defer_loading": True}]}, "tools[0].defer_loading"),
        ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": {}}}},
            "output_config.format",
        ),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"metadata": {"team": "x"}}, "metadata.team"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [*HELLO, {"role": "system", "content": [DOC_BLOCK]}]},
            "messages[1].content[0]",
        ),
        ({"messages": [{"role": "user", "content": "x", "name": "ann"}]}, "messages[0].name"),
        ({"messages": [*HELLO, {"role": "assistant", "content": "The answer is"}]}, "messages[1]"),
    ],
)
def test_what_cannot_be_translated_is_refused_naming_the_field(
    fields: dict[str, Any], param: str
) -> None:
    assert refused(body(**fields)).param == param


DOCUMENT = {
    "type": "document",
    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
}


@pytest.mark.parametrize(
    ("content", "param"),
    [
        ([DOCUMENT], "messages[0].content[0]"),
        (
            [{"type": "search_result", "source": "s", "title": "t", "content": []}],
            "messages[0].content[0]",
        ),
        ([{"type": "text"}], "messages[0].content[0].text"),
        ([{"type": "text", "text": "hi", "extra": 1}], "messages[0].content[0].extra"),
        (
            [{"type": "image", "source": {"type": "file", "file_id": "f1"}}],
            "messages[0].content[0].source",
        ),
        ([{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "messages[0].content[0]"),
        (
            [
                {
                    "type": "tool_result",
                    "tool_use_id": "t",
                    "content": [{"type": "image", "source": {}}],
                }
            ],
            "messages[0].content[0].content[0]",
        ),
        ([{"type": "tool_result", "content": "x"}], "messages[0].content[0].tool_use_id"),
        ([], "messages[0].content"),
        ([{"text": "no type"}], "messages[0].content[0]"),
    ],
)
def test_a_block_that_cannot_be_translated_is_refused_naming_it(
    content: list[Any], param: str
) -> None:
    assert refused(body(messages=[{"role": "user", "content": content}])).param == param


def test_an_assistant_block_that_cannot_be_translated_is_refused() -> None:
    server = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    messages = [*HELLO, {"role": "assistant", "content": [server]}, *HELLO]
    assert refused(body(messages=messages)).param == "messages[1].content[0]"


def test_the_prompt_alone_needs_no_max_tokens() -> None:
    chat = prompt({"model": MODEL, "messages": HELLO, "system": "Be brief.", "tools": [WEATHER]})
    assert [m["role"] for m in chat["messages"]] == ["system", "user"]
    assert chat["tools"][0]["function"]["name"] == "get_weather"
