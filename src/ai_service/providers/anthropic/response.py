"""An Anthropic Message -> an OpenAI `chat.completion`, and the pieces the stream shares.

- `id` is the message id, `created` the gateway's clock, `model` the resolved
  model the client is told about.
- Text blocks are concatenated (no separator, exactly as the stream delivers
  them) into `content`; with no text it is None when there are tool calls and
  "" otherwise. `tool_use` blocks become `tool_calls`; thinking blocks are
  concatenated into `reasoning_content`. Redacted thinking and server-tool
  blocks carry nothing an OpenAI client can use and are skipped.
- `arguments` is `input` serialized the way Anthropic streams `input_json_delta`
  (`json.dumps` separators, non-ASCII kept), so that the streamed fragments of
  an answer concatenate to the same string.
- `finish_reason` per `FINISH_REASONS`; `usage` per `usage_from` (with the
  server tool uses of `usage.server_tool_use`, billed per use where priced).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ai_service.errors import UpstreamError
from ai_service.providers.base import ChatResult, JsonObject, Usage

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: object) -> str | None:
    """OpenAI `finish_reason` for an Anthropic `stop_reason` (unknown ones: "stop")."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(str(stop_reason), "stop")


def tool_arguments(tool_input: object) -> str:
    """A `tool_use` block's `input` as the OpenAI `arguments` JSON string."""
    return json.dumps(tool_input if tool_input is not None else {}, ensure_ascii=False)


def usage_from(data: Mapping[str, Any], base: Usage | None = None) -> Usage:
    """A `Usage` from an Anthropic usage object; fields it lacks keep `base`'s values."""
    usage = Usage() if base is None else replace(base)
    for source, target in _USAGE_SOURCES:
        value = data.get(source)
        if isinstance(value, int) and not isinstance(value, bool):
            setattr(usage, target, value)
    details = data.get("output_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("thinking_tokens"), int):
        usage.reasoning_tokens = details["thinking_tokens"]
    # the cache writes by lifetime: `cache_creation.ephemeral_1h_input_tokens` is the
    # part of `cache_creation_input_tokens` written for an hour (priced apart)
    creation = data.get("cache_creation")
    if isinstance(creation, dict):
        hour = creation.get("ephemeral_1h_input_tokens")
        if isinstance(hour, int) and not isinstance(hour, bool) and hour >= 0:
            usage.cache_write_1h_tokens = hour
            five = creation.get("ephemeral_5m_input_tokens")
            if isinstance(five, int) and not isinstance(five, bool) and five >= 0:
                usage.cache_write_tokens = max(usage.cache_write_tokens, hour + five)
    tier = data.get("service_tier")
    if isinstance(tier, str):
        usage.service_tier = tier
    tools = data.get("server_tool_use")
    if isinstance(tools, dict):
        usage.tool_uses = tool_uses(tools)
    return usage


def tool_uses(counts: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    """`Usage.tool_uses` from a `server_tool_use` object: `web_search_requests: 2` is
    `("web_search", 2)`; zero counts are left out."""
    uses = []
    for name, value in counts.items():
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            uses.append((name.removesuffix("_requests"), value))
    return tuple(sorted(uses))


_USAGE_SOURCES = (
    ("input_tokens", "input_tokens"),
    ("cache_read_input_tokens", "cache_read_tokens"),
    ("cache_creation_input_tokens", "cache_write_tokens"),
    ("output_tokens", "output_tokens"),
)


def from_anthropic_response(data: JsonObject, *, model: str, created: int) -> ChatResult:
    """Translate an Anthropic Message into an OpenAI `chat.completion`.

    Raises `UpstreamError` (502) when the upstream's answer is not a Message.
    """
    content = data.get("content")
    if data.get("type", "message") != "message" or not isinstance(content, list):
        raise UpstreamError("claude: the provider sent a malformed response")
    texts: list[str] = []
    thoughts: list[str] = []
    tool_calls: list[JsonObject] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thoughts.append(block["thinking"])
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": str(block.get("id", "")),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name", "")),
                        "arguments": tool_arguments(block.get("input")),
                    },
                }
            )
    message: JsonObject = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    raw_usage = data.get("usage")
    usage = usage_from(raw_usage) if isinstance(raw_usage, dict) else None
    completion: JsonObject = {
        "id": str(data.get("id", "")),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason(data.get("stop_reason")) or "stop",
                "logprobs": None,
            }
        ],
    }
    if usage is not None:
        completion["usage"] = usage.to_openai()
    return ChatResult(completion=completion, usage=usage)
