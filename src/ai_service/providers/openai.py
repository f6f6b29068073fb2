"""OpenAI: the reference API; only the output-limit field differs by model family.

OpenAI's reasoning models (the gpt-5 family and the o-series) refuse
`max_tokens` and take `max_completion_tokens`, which every current chat model
also accepts, so the gateway always sends `max_completion_tokens`.
"""

from __future__ import annotations

from ai_service.providers.base import ProviderConfig
from ai_service.providers.openai_compat import OpenAICompatAdapter, Quirks

QUIRKS = Quirks(limit_field="max_completion_tokens")


class OpenAIAdapter(OpenAICompatAdapter):
    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config, QUIRKS)
