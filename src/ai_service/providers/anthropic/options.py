"""Scalar request options: sampling, stop sequences, user id, JSON mode, thinking.

- `temperature`: OpenAI's range is 0..2, Anthropic's 0..1, so the value is
  clamped into 0..1 (1.3 is sent as 1.0). It is not rescaled: 0.7 means the
  same to clients of both APIs, and the values clients actually send are <= 1.
- `top_p` is passed, except alongside `temperature`: current Claude models
  reject the two together, and temperature is the one clients mean.
- `top_k` (not OpenAI's, but sent by some clients) is passed.
- `stop` (string or list) -> `stop_sequences`; empty and whitespace-only
  entries are dropped because Anthropic rejects them.
- `user`, else `safety_identifier`, else `metadata.user_id`/`metadata.user` ->
  `metadata: {"user_id"}`; the rest of OpenAI's `metadata` has no counterpart.
- `response_format`: Anthropic has no JSON mode that every model accepts, so
  `json_object` adds a system instruction to answer with one JSON object only,
  and `json_schema` adds one to answer only with JSON conforming to the given
  schema (the schema is quoted in the instruction); `text` adds nothing.
- `reasoning_effort` -> `thinking`, only where that is known to be accepted
  (see `thinking_for`); otherwise it is dropped.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ai_service.errors import InvalidRequestError
from ai_service.providers.base import JsonObject

JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: "
    "no prose before or after it and no Markdown code fences."
)
JSON_SCHEMA_INSTRUCTION = (
    "Respond with a single valid JSON value that conforms to the JSON Schema below, "
    "and nothing else: no prose before or after it and no Markdown code fences."
)

#: Thinking budget per OpenAI `reasoning_effort` for models that take `budget_tokens`.
EFFORT_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
}
#: Anthropic `output_config.effort` per OpenAI `reasoning_effort` for adaptive models.
ADAPTIVE_EFFORTS: dict[str, str] = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}
MIN_THINKING_BUDGET = 1024
#: Models that take `thinking: {"type": "enabled", "budget_tokens"}`.
BUDGET_THINKING_MODELS = re.compile(
    r"^claude-(?:3-7-sonnet|(?:opus|sonnet|haiku)-4(?:-[015])?)(?:-\d{8}|-latest)?$"
)
#: Models that take `thinking: {"type": "adaptive"}` with `output_config.effort`.
ADAPTIVE_THINKING_MODELS = re.compile(
    r"^claude-(?:(?:opus|sonnet)-4-[6-9]|(?:opus|sonnet|mythos|fable)-(?:[5-9]|preview))(?:\b|$)"
)


def sampling(body: dict[str, Any]) -> JsonObject:
    """`temperature` (clamped to 0..1), `top_p` (unless temperature is set), `top_k`."""
    out: JsonObject = {}
    temperature = _number(body, "temperature")
    if temperature is not None:
        out["temperature"] = min(max(float(temperature), 0.0), 1.0)
    top_p = _number(body, "top_p")
    if top_p is not None and temperature is None:
        out["top_p"] = top_p
    top_k = body.get("top_k")
    if top_k is not None:
        if not isinstance(top_k, int) or isinstance(top_k, bool):
            raise InvalidRequestError("top_k must be an integer", param="top_k")
        out["top_k"] = top_k
    return out


def stop_sequences(stop: object) -> list[str]:
    """OpenAI `stop` as Anthropic `stop_sequences` (may be empty: omit)."""
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise InvalidRequestError("stop must be a string or an array of strings", param="stop")
    return [s for s in items if s.strip()]


def user_id(body: dict[str, Any]) -> str | None:
    """The end-user id for Anthropic's `metadata.user_id`, if the client gave one."""
    metadata = body.get("metadata")
    candidates = [body.get("user"), body.get("safety_identifier")]
    if isinstance(metadata, dict):
        candidates += [metadata.get("user_id"), metadata.get("user")]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def json_instruction(response_format: object) -> str | None:
    """The system instruction standing in for OpenAI's `response_format`, if any."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT_INSTRUCTION
    if kind == "json_schema" and isinstance(response_format, dict):
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(schema, dict):
            raise InvalidRequestError(
                "json_schema needs a schema object", param="response_format.json_schema"
            )
        lines = [JSON_SCHEMA_INSTRUCTION, ""]
        if isinstance(spec.get("name"), str):
            lines.append(f"Schema name: {spec['name']}")
        if isinstance(spec.get("description"), str):
            lines.append(f"Description: {spec['description']}")
        lines.append(json.dumps(schema, ensure_ascii=False))
        return "\n".join(lines)
    raise InvalidRequestError("unsupported response_format type", param="response_format.type")


def thinking_for(effort: object, model: str, max_tokens: int) -> JsonObject:
    """Top-level `thinking` (and `output_config`) for a `reasoning_effort`, or `{}`.

    Budget models (Claude 3.7 Sonnet, the 4.0-4.5 family) get
    `{"type": "enabled", "budget_tokens"}` with the budget of `EFFORT_BUDGETS`
    capped at half of `max_tokens`, so that half stays for the answer and the
    budget is always below `max_tokens`; below Anthropic's minimum of 1024 no
    thinking is asked for. Adaptive models (Opus/Sonnet 4.6+, the 5 family)
    get `{"type": "adaptive"}` with `output_config.effort`. Unknown models,
    efforts `none`/unknown, and non-strings get nothing: a dropped hint is
    better than a 400.
    """
    if not isinstance(effort, str) or effort not in EFFORT_BUDGETS:
        return {}
    if ADAPTIVE_THINKING_MODELS.match(model):
        return {
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": ADAPTIVE_EFFORTS[effort]},
        }
    if BUDGET_THINKING_MODELS.match(model):
        budget = min(EFFORT_BUDGETS[effort], max_tokens // 2)
        if budget >= MIN_THINKING_BUDGET:
            return {"thinking": {"type": "enabled", "budget_tokens": budget}}
    return {}


def _number(body: dict[str, Any], name: str) -> float | int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"{name} must be a number", param=name)
    return value
