"""DeepSeek: OpenAI-shaped, at a base URL without `/v1`, with visible reasoning.

- The output limit is `max_tokens`; `stream_options.include_usage` is
  accepted, and usage rides on the finish chunk (the shared parser splits it
  off). Usage carries `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens`
  (read by `parse_usage` as cached and uncached prompt tokens).
- Answers carry `reasoning_content` beside `content` (message and stream
  deltas), passed through as it is.
- `reasoning_content` sent back in assistant messages: the first reasoner
  (`deepseek-reasoner` / R1) refused it with a 400, and thinking mode ignores
  it, except within a user turn in which the model called tools, where it must
  be sent back. So it is kept in the turns that have tool calls (R1 could not
  call tools) and stripped everywhere else.
- Only the standard roles are accepted: `developer` is sent as `system`.
- `reasoning_effort: "none"` is `thinking: {"type": "disabled"}`; the other
  efforts DeepSeek maps itself. The R1-era reasoner refuses `logprobs` and
  `top_logprobs` (its ignored sampling fields are sent as they are).
"""

from __future__ import annotations

from typing import Any

from ai_service.providers.base import ChatRequest, JsonObject, ProviderConfig
from ai_service.providers.openai_compat import OpenAICompatAdapter, Quirks

LEGACY_REASONERS = ("deepseek-reasoner", "deepseek-r1")


def _role(message: object) -> object:
    return message.get("role") if isinstance(message, dict) else None


def strip_reasoning(messages: list[Any]) -> list[Any]:
    """Messages without `reasoning_content`, except in the user turns that called tools."""
    out = list(messages)
    start = 0
    for end in range(len(out) + 1):
        if end < len(out) and _role(out[end]) != "user":
            continue
        turn = range(start, end)  # the messages after one user message, up to the next
        if not any(_role(out[i]) == "assistant" and out[i].get("tool_calls") for i in turn):
            for i in turn:
                if isinstance(out[i], dict) and "reasoning_content" in out[i]:
                    out[i] = {k: v for k, v in out[i].items() if k != "reasoning_content"}
        start = end + 1
    return out


def rewrite(body: JsonObject, req: ChatRequest) -> None:
    """DeepSeek's reasoning rules."""
    if isinstance(body.get("messages"), list):
        body["messages"] = strip_reasoning(body["messages"])
    if body.get("reasoning_effort") == "none":
        del body["reasoning_effort"]
        body.setdefault("thinking", {"type": "disabled"})
    if req.model.lower().startswith(LEGACY_REASONERS):
        body.pop("logprobs", None)
        body.pop("top_logprobs", None)


QUIRKS = Quirks(developer_role=False, rewrite=rewrite)


class DeepSeekAdapter(OpenAICompatAdapter):
    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config, QUIRKS)
