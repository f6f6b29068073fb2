"""tools, tool_choice and parallel_tool_calls -> Anthropic."""

from __future__ import annotations

from typing import Any

import pytest

from ai_service.errors import InvalidRequestError
from ai_service.providers.anthropic.request import to_anthropic_request
from ai_service.providers.anthropic.tools import tool_prompt_tokens

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time"}}


def translate(**fields: Any) -> dict[str, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], **fields}
    return to_anthropic_request(body, model="claude-sonnet-4-5", max_tokens=512, stream=False)


def test_function_tools_become_anthropic_tools() -> None:
    out = translate(tools=[WEATHER, CLOCK])
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in out


def test_cache_control_on_a_tool_is_kept() -> None:
    cached = {**CLOCK, "cache_control": {"type": "ephemeral"}}
    assert translate(tools=[cached])["tools"][0]["cache_control"] == {"type": "ephemeral"}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"type": "tool", "name": "get_time"},
        ),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: dict[str, Any]) -> None:
    assert translate(tools=[WEATHER, CLOCK], tool_choice=choice)["tool_choice"] == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("auto", {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
        ),
        ("none", {"type": "none"}),
    ],
)
def test_parallel_tool_calls_false_disables_parallel_tool_use(
    choice: Any, expected: dict[str, Any]
) -> None:
    out = translate(tools=[WEATHER, CLOCK], tool_choice=choice, parallel_tool_calls=False)
    assert out["tool_choice"] == expected


def test_parallel_tool_calls_true_changes_nothing() -> None:
    assert "tool_choice" not in translate(tools=[WEATHER], parallel_tool_calls=True)


def test_tool_choice_without_tools_is_dropped() -> None:
    out = translate(tool_choice="required", parallel_tool_calls=False)
    assert "tool_choice" not in out
    assert "tools" not in out
    assert "tools" not in translate(tools=[], tool_choice="auto")


def test_allowed_tools_narrows_tools_and_sets_mode() -> None:
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "get_time"}}],
        },
    }
    out = translate(tools=[WEATHER, CLOCK], tool_choice=choice)
    assert [t["name"] for t in out["tools"]] == ["get_time"]
    assert out["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function"}]}, "tools[0]"),
        (
            {"tools": [CLOCK, {"type": "function", "function": {"name": "f", "parameters": []}}]},
            "tools[1].function.parameters",
        ),
        ({"tools": {"a": 1}}, "tools"),
        ({"tools": [CLOCK], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": [CLOCK], "tool_choice": {"type": "function", "function": {}}},
            "tool_choice.function",
        ),
        ({"tools": [CLOCK], "tool_choice": {"type": "mcp"}}, "tool_choice"),
        (
            {
                "tools": [CLOCK],
                "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "x"}},
            },
            "tool_choice.allowed_tools",
        ),
        (
            {
                "tools": [CLOCK],
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {
                        "mode": "auto",
                        "tools": [{"type": "function", "function": {"name": "zz"}}],
                    },
                },
            },
            "tool_choice.allowed_tools",
        ),
    ],
)
def test_malformed_tools_are_a_400(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate(**fields)
    assert info.value.param == param
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("model", "choice", "tokens"),
    [
        ("claude-sonnet-4-5", None, 346),
        ("claude-sonnet-4-5", "none", 346),
        ("claude-opus-4-7", "required", 313),
        ("claude-3-5-sonnet-20241022", {"type": "function", "function": {"name": "get_time"}}, 313),
        ("claude-3-opus-20240229", "auto", 530),
        ("claude-3-opus-20240229", "required", 281),
        ("claude-3-sonnet-20240229", "auto", 159),
        ("claude-3-5-haiku-20241022", "required", 340),
        ("claude-fable-5-1", "auto", 530),  # not in Anthropic's table: the largest count
    ],
)
def test_the_hidden_tool_use_system_prompt_is_counted_per_model_and_tool_choice(
    model: str, choice: object, tokens: int
) -> None:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
    body["tools"] = [CLOCK]
    if choice is not None:
        body["tool_choice"] = choice
    out = to_anthropic_request(body, model=model, max_tokens=512, stream=False)
    assert tool_prompt_tokens(model, out) == tokens
    assert tool_prompt_tokens(model, translate()) == 0  # no tools, no tool prompt
