"""Together: an OpenAI-compatible upstream served by the shared adapter."""

from __future__ import annotations

from ai_service.providers.base import ProviderConfig
from ai_service.providers.openai_compat import OpenAICompatAdapter, Quirks

QUIRKS = Quirks()


class TogetherAdapter(OpenAICompatAdapter):
    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config, QUIRKS)
