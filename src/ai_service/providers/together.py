"""Together: OpenAI-shaped, with its own spelling of a few fields and values.

- The output limit is `max_tokens`; `stream_options` is not part of Together's
  API, and usage always rides on the last stream chunk (`usage: null` before),
  so the option is not sent and the shared parser splits the usage off.
- `logprobs` is the number of top tokens (0-20), not a boolean: OpenAI's
  `logprobs: true, top_logprobs: k` becomes `logprobs: max(k, 1)`.
- `stop` is a list of strings; `developer` messages are sent as `system`.
- `reasoning_effort` is low/medium/high (`minimal` -> low, `xhigh`/`max` -> high);
  `"none"` switches reasoning off with `reasoning: {"enabled": false}`.
- Reasoning models answer with `reasoning` (renamed to `reasoning_content`,
  as DeepSeek and the gateway's clients spell it) and may finish with `eos`
  (OpenAI's `stop`).
"""

from __future__ import annotations

from ai_service.providers.base import ChatRequest, JsonObject, ProviderConfig
from ai_service.providers.openai_compat import OpenAICompatAdapter, Quirks


def rewrite(body: JsonObject, req: ChatRequest) -> None:
    """Together's `logprobs`, `stop` and reasoning switch."""
    top = body.pop("top_logprobs", None)
    logprobs = body.get("logprobs")
    if logprobs is True:
        body["logprobs"] = max(top, 1) if isinstance(top, int) else 1
    elif logprobs is False or logprobs is None:
        body.pop("logprobs", None)
    if isinstance(body.get("stop"), str):
        body["stop"] = [body["stop"]]
    if req.body.get("reasoning_effort") == "none" and "reasoning" not in body:
        body["reasoning"] = {"enabled": False}


QUIRKS = Quirks(
    stream_usage_option=False,
    developer_role=False,
    reasoning_efforts={"minimal": "low", "xhigh": "high", "max": "high", "none": None},
    rewrite=rewrite,
    reasoning_field="reasoning",
    finish_reasons={"eos": "stop"},
)


class TogetherAdapter(OpenAICompatAdapter):
    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config, QUIRKS)
