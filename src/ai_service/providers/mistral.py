"""Mistral: OpenAI-shaped, but it rejects every field it does not know (422 `extra_forbidden`).

- Only the fields of Mistral's chat completion reference are sent: `seed` is
  `random_seed`, the limit `max_tokens`; `stream_options`, `logit_bias`,
  `logprobs`, `user`, `store`, ... are dropped. Each message role keeps only
  Mistral's fields (an SDK's echoed `refusal` or `audio` would be rejected);
  `developer` is sent as `system`.
- `tool_choice: "required"` is `"any"`; `reasoning_effort` is `"none"` or `"high"`.
- Tool-call ids are 9 characters of [a-zA-Z0-9]: any other id in assistant
  `tool_calls` and `tool` messages is replaced by one derived from it, the same
  wherever it appears.
- Usage rides on the last stream chunk; tool calls stream whole, without a
  reliable `index`; reasoning models answer with `text` / `thinking` chunks
  (flattened to `content` / `reasoning_content`); `model_length` is `length`.
"""

from __future__ import annotations

import hashlib
import re
import string
from typing import Any

from ai_service.providers.base import ChatRequest, JsonObject, ProviderConfig
from ai_service.providers.openai_compat import OpenAICompatAdapter, Quirks

ACCEPTED_FIELDS = frozenset(
    {"model", "messages", "stream", "max_tokens", "stop", "n", "temperature", "top_p"}
    | {"random_seed", "presence_penalty", "frequency_penalty", "response_format", "prediction"}
    | {"tools", "tool_choice", "parallel_tool_calls", "reasoning_effort", "prompt_mode"}
    | {"metadata", "guardrails", "prompt_cache_key", "safe_prompt"}
)
MESSAGE_FIELDS = {
    "system": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    "assistant": frozenset({"role", "content", "tool_calls", "prefix"}),
    "tool": frozenset({"role", "content", "tool_call_id", "name"}),
}
EFFORTS = {"minimal": "none"} | dict.fromkeys(("low", "medium", "xhigh", "max"), "high")
TOOL_CALL_ID = re.compile(r"[a-zA-Z0-9]{9}")
_ALPHABET = string.ascii_letters + string.digits


def _derived_id(original: str, attempt: int) -> str:
    number = int.from_bytes(hashlib.sha256(f"{attempt}:{original}".encode()).digest()[:8])
    chars = []
    for _ in range(9):
        number, digit = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def _str(mapping: dict[str, Any], key: str) -> bool:
    return isinstance(mapping.get(key), str)


def _ids(message: dict[str, Any]) -> list[str]:
    calls = message.get("tool_calls") if message.get("role") == "assistant" else None
    ids = [c["id"] for c in calls or () if isinstance(c, dict) and _str(c, "id")]
    if message.get("role") == "tool" and _str(message, "tool_call_id"):
        ids.append(message["tool_call_id"])
    return ids


def map_tool_call_ids(messages: list[Any]) -> list[Any]:
    """Messages whose tool-call ids all fit Mistral's format, consistently replaced."""
    found = [i for m in messages if isinstance(m, dict) for i in _ids(m)]
    taken = {i for i in found if TOOL_CALL_ID.fullmatch(i)}
    mapping: dict[str, str] = {}
    for original in found:
        if original in taken or original in mapping:
            continue
        attempt = 0
        while (new := _derived_id(original, attempt)) in taken:
            attempt += 1
        mapping[original] = new
        taken.add(new)
    if not mapping:
        return messages
    return [_renamed(m, mapping) if isinstance(m, dict) and _ids(m) else m for m in messages]


def _renamed(message: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    if message.get("role") == "tool":
        old = message["tool_call_id"]
        return {**message, "tool_call_id": mapping.get(old, old)}
    calls = [
        {**c, "id": mapping.get(c["id"], c["id"])} if isinstance(c, dict) and _str(c, "id") else c
        for c in message["tool_calls"]
    ]
    return {**message, "tool_calls": calls}


def rewrite(body: JsonObject, _req: ChatRequest) -> None:
    """Mistral's own id format for tool calls."""
    if isinstance(body.get("messages"), list):
        body["messages"] = map_tool_call_ids(body["messages"])


QUIRKS = Quirks(
    stream_usage_option=False,
    developer_role=False,
    renamed_fields={"seed": "random_seed"},
    accepted_fields=ACCEPTED_FIELDS,
    message_fields=MESSAGE_FIELDS,
    tool_choices={"required": "any"},
    reasoning_efforts=EFFORTS,
    rewrite=rewrite,
    finish_reasons={"model_length": "length"},
    index_tool_calls=True,
)


class MistralAdapter(OpenAICompatAdapter):
    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config, QUIRKS)
