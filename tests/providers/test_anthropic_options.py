"""response_format and reasoning_effort -> Anthropic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ai_service.errors import InvalidRequestError
from ai_service.providers.anthropic.options import (
    EFFORT_BUDGETS,
    JSON_OBJECT_INSTRUCTION,
    JSON_SCHEMA_INSTRUCTION,
    MIN_THINKING_BUDGET,
    thinking_for,
)
from ai_service.providers.anthropic.request import to_anthropic_request

BUDGET_MODEL = "claude-sonnet-4-5-20250929"
ADAPTIVE_MODEL = "claude-opus-4-6"
USER = {"role": "user", "content": "q"}


def translate(
    *msgs: dict[str, Any], model: str = BUDGET_MODEL, max_tokens: int = 64000, **fields: Any
) -> dict[str, Any]:
    body = {"model": "m", "messages": list(msgs) or [USER], **fields}
    return to_anthropic_request(body, model=model, max_tokens=max_tokens, stream=False)


# -- response_format ------------------------------------------------------------------


def test_json_object_adds_a_json_only_system_instruction() -> None:
    out = translate(
        {"role": "system", "content": "Be brief."}, USER, response_format={"type": "json_object"}
    )
    assert out["system"] == f"Be brief.\n\n{JSON_OBJECT_INSTRUCTION}"
    assert translate(response_format={"type": "json_object"})["system"] == JSON_OBJECT_INSTRUCTION


def test_json_schema_instruction_quotes_the_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "count", "schema": schema, "strict": True},
    }
    system = translate(response_format=fmt)["system"]
    assert system.startswith(JSON_SCHEMA_INSTRUCTION)
    assert "Schema name: count" in system
    assert json.loads(system.splitlines()[-1]) == schema


def test_json_instruction_is_appended_as_a_block_to_a_block_system() -> None:
    cached = {"type": "text", "text": "p", "cache_control": {"type": "ephemeral"}}
    out = translate(
        {"role": "system", "content": [cached]}, USER, response_format={"type": "json_object"}
    )
    assert out["system"] == [cached, {"type": "text", "text": JSON_OBJECT_INSTRUCTION}]


def test_text_response_format_adds_nothing() -> None:
    assert "system" not in translate(response_format={"type": "text"})


@pytest.mark.parametrize(
    "fmt", [{"type": "yaml"}, {"type": "json_schema", "json_schema": {"name": "x"}}, "json"]
)
def test_unusable_response_format_is_a_400(fmt: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate(response_format=fmt)
    assert info.value.param is not None
    assert info.value.param.startswith("response_format")


# -- reasoning_effort -------------------------------------------------------------------


@pytest.mark.parametrize(("effort", "budget"), sorted(EFFORT_BUDGETS.items()))
def test_reasoning_effort_becomes_a_thinking_budget_on_budget_models(
    effort: str, budget: int
) -> None:
    out = translate(reasoning_effort=effort, max_tokens=128000)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert "output_config" not in out


def test_thinking_budget_is_capped_at_half_of_max_tokens() -> None:
    assert translate(reasoning_effort="high", max_tokens=5000)["thinking"] == {
        "type": "enabled",
        "budget_tokens": 2500,
    }


def test_thinking_is_dropped_when_max_tokens_cannot_hold_the_minimum_budget() -> None:
    assert "thinking" not in translate(reasoning_effort="high", max_tokens=2047)
    assert translate(reasoning_effort="high", max_tokens=2048)["thinking"]["budget_tokens"] == 1024


@pytest.mark.parametrize(
    "model",
    [
        "claude-3-7-sonnet-20250219",
        "claude-opus-4-1-20250805",
        "claude-haiku-4-5",
        "claude-sonnet-4-20250514",
    ],
)
@pytest.mark.parametrize("effort", sorted(EFFORT_BUDGETS))
@pytest.mark.parametrize("max_tokens", [1, 1024, 2048, 2049, 4096, 20000, 128000])
def test_a_sent_budget_is_always_valid(model: str, effort: str, max_tokens: int) -> None:
    thinking = thinking_for(effort, model, max_tokens).get("thinking")
    if thinking is not None:
        assert MIN_THINKING_BUDGET <= thinking["budget_tokens"] < max_tokens


@pytest.mark.parametrize(
    ("effort", "sent"),
    [("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "high")],
)
@pytest.mark.parametrize(
    "model",
    [ADAPTIVE_MODEL, "claude-sonnet-4-6", "claude-opus-4-7", "claude-sonnet-5", "claude-opus-5-5"],
)
def test_adaptive_models_get_adaptive_thinking_with_effort(
    model: str, effort: str, sent: str
) -> None:
    out = translate(reasoning_effort=effort, model=model, max_tokens=1000)
    assert out["thinking"] == {"type": "adaptive"}
    assert out["output_config"] == {"effort": sent}


@pytest.mark.parametrize(
    "model",
    ["claude-3-5-haiku-20241022", "claude-3-opus-20240229", "my-finetune", "claude-instant"],
)
def test_reasoning_effort_is_dropped_for_models_not_known_to_think(model: str) -> None:
    out = translate(reasoning_effort="high", model=model)
    assert "thinking" not in out
    assert "output_config" not in out


@pytest.mark.parametrize("effort", ["none", "extreme", 3, None])
def test_unknown_or_none_effort_adds_no_thinking(effort: Any) -> None:
    assert "thinking" not in translate(reasoning_effort=effort)


def test_thinking_drops_sampling_parameters() -> None:
    out = translate(reasoning_effort="low", temperature=0.2, top_k=5)
    assert out["thinking"]["type"] == "enabled"
    assert not {"temperature", "top_p", "top_k"} & set(out)
    assert translate(reasoning_effort="none", temperature=0.2)["temperature"] == 0.2


TOOLS = [{"type": "function", "function": {"name": "f"}}]


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "f"}}])
def test_no_thinking_when_tool_use_is_forced(choice: Any) -> None:
    out = translate(reasoning_effort="high", tools=TOOLS, tool_choice=choice, temperature=0.3)
    assert "thinking" not in out
    assert out["temperature"] == 0.3
    assert "thinking" in translate(reasoning_effort="high", tools=TOOLS, tool_choice="auto")


def test_no_thinking_with_an_assistant_prefill() -> None:
    assert "thinking" not in translate(
        USER, {"role": "assistant", "content": "{"}, reasoning_effort="high"
    )


def test_no_thinking_while_the_last_assistant_turn_holds_tool_use() -> None:
    tool_call: dict[str, Any] = {
        "id": "c1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }
    in_loop: list[dict[str, Any]] = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
    ]
    assert "thinking" not in translate(*in_loop, reasoning_effort="high", tools=TOOLS)
    after_loop = [
        *in_loop,
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "more"},
    ]
    assert "thinking" in translate(*after_loop, reasoning_effort="high", tools=TOOLS)
