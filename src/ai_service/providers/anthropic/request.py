"""The whole OpenAI Chat Completions body -> one Anthropic Messages body.

The Anthropic body is built from scratch out of `ALLOWED_FIELDS`: Anthropic
answers 400 to fields it does not know, so every client field without a
translation is dropped. `DROPPED_FIELDS` lists the OpenAI fields known to have
no Anthropic meaning (documented for operators and clients); fields in neither
list are dropped too. `max_tokens` is always the gateway's resolved output
limit, never the client's raw `max_tokens`/`max_completion_tokens`.

Thinking is asked for (see `options.thinking_for`) only when it cannot make the
request fail: not when `tool_choice` forces a tool, not when the conversation
ends with an assistant prefill, and not when the last assistant turn holds
`tool_use` (Anthropic then demands that turn's signed thinking block, which an
OpenAI client cannot send back). With thinking on, `temperature`, `top_p` and
`top_k` are dropped, since Anthropic rejects them with thinking.
"""

from __future__ import annotations

from typing import Any

from ai_service.errors import InvalidRequestError
from ai_service.providers.anthropic.messages import (
    System,
    Turn,
    translate_messages,
    turns_to_json,
)
from ai_service.providers.anthropic.options import (
    json_instruction,
    sampling,
    stop_sequences,
    thinking_for,
    user_id,
)
from ai_service.providers.anthropic.tools import forces_tool_use, translate_tools
from ai_service.providers.base import JsonObject

#: The only top-level fields ever sent to Anthropic.
ALLOWED_FIELDS = frozenset(
    {
        "model",
        "max_tokens",
        "system",
        "messages",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
    }
)

#: OpenAI fields with no Anthropic meaning, dropped.
DROPPED_FIELDS = (
    "stream_options",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "service_tier",
    "store",
    "modalities",
    "prediction",
    "audio",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "prompt_cache_retention",
    "functions",
    "function_call",
)

#: OpenAI fields consumed by a translation rather than forwarded under their name.
TRANSLATED_FIELDS = (
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "user",
    "safety_identifier",
    "metadata",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
)


def to_anthropic_request(
    body: dict[str, Any], *, model: str, max_tokens: int, stream: bool
) -> JsonObject:
    """Translate the client's OpenAI-shaped body into an Anthropic Messages body.

    Raises `InvalidRequestError` (400, with `param`) for input it cannot translate.
    """
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise InvalidRequestError("messages must be a non-empty array", param="messages")
    system, turns = translate_messages(raw_messages)
    system = _with_instruction(system, json_instruction(body.get("response_format")))
    tools, tool_choice = translate_tools(body)

    out: JsonObject = {"model": model, "max_tokens": max_tokens}
    if system:
        out["system"] = system
    out["messages"] = turns_to_json(turns)
    stops = stop_sequences(body.get("stop"))
    if stops:
        out["stop_sequences"] = stops
    thinking: JsonObject = {}
    if _thinking_is_safe(turns, tool_choice):
        thinking = thinking_for(body.get("reasoning_effort"), model, max_tokens)
    out.update(thinking or sampling(body))
    if tools:
        out["tools"] = tools
        if tool_choice is not None:
            out["tool_choice"] = tool_choice
    user = user_id(body)
    if user is not None:
        out["metadata"] = {"user_id": user}
    if stream:
        out["stream"] = True
    return out


def _with_instruction(system: System, instruction: str | None) -> System:
    if instruction is None:
        return system
    if system is None:
        return instruction
    if isinstance(system, str):
        return f"{system}\n\n{instruction}"
    return [*system, {"type": "text", "text": instruction}]


def _thinking_is_safe(turns: list[Turn], tool_choice: JsonObject | None) -> bool:
    if forces_tool_use(tool_choice) or turns[-1].role == "assistant":
        return False
    for turn in reversed(turns):
        if turn.role == "assistant":
            return not any(block["type"] == "tool_use" for block in turn.blocks)
    return True
