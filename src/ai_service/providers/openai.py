"""OpenAI: the reference API; only the reasoning models need care.

- The reasoning models (the gpt-5 family apart from its `-chat` models, and the
  o-series) refuse `max_tokens` and take `max_completion_tokens`, which every
  current chat model also accepts, so the gateway always sends
  `max_completion_tokens`.
- The same models refuse the sampling fields (`temperature` other than 1,
  `top_p`, the penalties, `logprobs`, `top_logprobs`, `logit_bias`) unless
  reasoning is switched off with `reasoning_effort: "none"` (gpt-5.1 and
  later). A request written for a chat model (and `gpt-4o`, which the default
  alias table sends to a gpt-5 model) would fail, so those fields are dropped.
- Usage: `prompt_tokens_details.cached_tokens` and
  `completion_tokens_details.reasoning_tokens` (read by `parse_usage`); stream
  usage only with `stream_options.include_usage`, which the gateway always sets.
"""

from __future__ import annotations

import re

from ai_service.providers.base import ChatRequest, JsonObject, ProviderConfig
from ai_service.providers.openai_compat import OpenAICompatAdapter, Quirks

REASONING_MODEL = re.compile(r"^(o1|o3|o4|gpt-5)(?!.*-chat)")
SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
)


def is_reasoning_model(model: str) -> bool:
    """Whether `model` is one of OpenAI's reasoning models."""
    return REASONING_MODEL.match(model) is not None


def drop_sampling_fields(body: JsonObject, req: ChatRequest) -> None:
    """Drop the fields a reasoning model refuses while it reasons."""
    if not is_reasoning_model(req.model) or body.get("reasoning_effort") == "none":
        return
    for name in SAMPLING_FIELDS:
        body.pop(name, None)


QUIRKS = Quirks(limit_field="max_completion_tokens", rewrite=drop_sampling_fields)


class OpenAIAdapter(OpenAICompatAdapter):
    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config, QUIRKS)
