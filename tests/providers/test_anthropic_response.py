"""Anthropic Message -> OpenAI chat.completion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from ai_service.errors import UpstreamError
from ai_service.providers.anthropic.response import from_anthropic_response
from ai_service.providers.base import Usage

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
CREATED = 1767225600


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def message(content: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 5},
        **fields,
    }


def parse(data: dict[str, Any], model: str = "claude-sonnet-4-5") -> dict[str, Any]:
    return from_anthropic_response(data, model=model, created=CREATED).completion


def test_golden_response_translation() -> None:
    result = from_anthropic_response(
        load("response_text_tool.anthropic.json"), model="claude-sonnet-4-5", created=CREATED
    )
    assert result.completion == load("response_text_tool.openai.json")
    assert result.usage == Usage(
        input_tokens=472, cache_read_tokens=1024, output_tokens=89, service_tier="standard"
    )


def test_completion_is_accepted_by_the_openai_sdk() -> None:
    completion = ChatCompletion.model_validate(parse(load("response_text_tool.anthropic.json")))
    assert completion.choices[0].message.tool_calls is not None
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 1496


def test_model_is_the_resolved_model_not_the_upstream_echo() -> None:
    assert parse(message([{"type": "text", "text": "hi"}]), model="alias-target")["model"] == (
        "alias-target"
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reason_mapping(stop_reason: str | None, finish: str) -> None:
    data = message([{"type": "text", "text": "x"}], stop_reason=stop_reason)
    assert parse(data)["choices"][0]["finish_reason"] == finish


def test_text_blocks_are_concatenated() -> None:
    data = message([{"type": "text", "text": "Hello"}, {"type": "text", "text": ", world"}])
    assert parse(data)["choices"][0]["message"] == {"role": "assistant", "content": "Hello, world"}


def test_content_is_none_with_only_tool_calls_and_empty_with_nothing() -> None:
    tool_only = message([{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}])
    assert parse(tool_only)["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert parse(message([]))["choices"][0]["message"]["content"] == ""


def test_tool_arguments_keep_non_ascii_and_nested_values() -> None:
    tool_input = {"city": "Zürich", "days": [1, 2], "opts": {"metric": True, "x": None}}
    data = message([{"type": "tool_use", "id": "t", "name": "f", "input": tool_input}])
    arguments = parse(data)["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert arguments == ('{"city": "Zürich", "days": [1, 2], "opts": {"metric": true, "x": null}}')
    assert json.loads(arguments) == tool_input


def test_thinking_becomes_reasoning_content_and_redacted_thinking_is_skipped() -> None:
    data = message(
        [
            {"type": "thinking", "thinking": "Let me think. ", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "thinking", "thinking": "Done.", "signature": "sig"},
            {"type": "text", "text": "42"},
        ]
    )
    assert parse(data)["choices"][0]["message"] == {
        "role": "assistant",
        "content": "42",
        "reasoning_content": "Let me think. Done.",
    }


def test_usage_counts_cache_writes_and_thinking_tokens() -> None:
    usage = {
        "input_tokens": 100,
        "cache_creation_input_tokens": 2000,
        "cache_read_input_tokens": 300,
        "output_tokens": 50,
        "output_tokens_details": {"thinking_tokens": 20},
    }
    result = from_anthropic_response(
        message([{"type": "text", "text": "x"}], usage=usage), model="m", created=CREATED
    )
    assert result.usage == Usage(
        input_tokens=100,
        cache_read_tokens=300,
        cache_write_tokens=2000,
        output_tokens=50,
        reasoning_tokens=20,
    )
    assert result.completion["usage"] == {
        "prompt_tokens": 2400,
        "completion_tokens": 50,
        "total_tokens": 2450,
        "prompt_tokens_details": {"cached_tokens": 300, "cache_creation_tokens": 2000},
        "completion_tokens_details": {"reasoning_tokens": 20},
    }


def test_missing_usage_gives_no_usage() -> None:
    data = message([{"type": "text", "text": "x"}])
    del data["usage"]
    result = from_anthropic_response(data, model="m", created=CREATED)
    assert result.usage is None
    assert "usage" not in result.completion


@pytest.mark.parametrize(
    "data", [{"type": "error", "error": {}}, {"id": "x"}, {"type": "message", "content": "hi"}]
)
def test_malformed_answer_is_an_upstream_error(data: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError) as info:
        from_anthropic_response(data, model="m", created=CREATED)
    assert info.value.status == 502
