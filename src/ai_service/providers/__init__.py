"""The provider registry: path segment -> adapter factory, as one explicit literal."""

from __future__ import annotations

from collections.abc import Callable

from ai_service.config import PROVIDER_ENV, Settings
from ai_service.providers.anthropic import AnthropicAdapter
from ai_service.providers.base import Adapter, ProviderConfig
from ai_service.providers.deepseek import DeepSeekAdapter
from ai_service.providers.mistral import MistralAdapter
from ai_service.providers.openai import OpenAIAdapter
from ai_service.providers.together import TogetherAdapter

REGISTRY: dict[str, Callable[[ProviderConfig], Adapter]] = {
    "openai": OpenAIAdapter,
    "claude": AnthropicAdapter,
    "mistral": MistralAdapter,
    "llama": TogetherAdapter,
    "deepseek": DeepSeekAdapter,
}

# path segments a client may use; "v1" is the legacy unified path to OpenAI
PATHS: dict[str, str] = {name: name for name in PROVIDER_ENV} | {"v1": "openai"}


def configured(settings: Settings) -> dict[str, Adapter]:
    """Adapters for every provider whose API key is set."""
    adapters: dict[str, Adapter] = {}
    for name, factory in REGISTRY.items():
        base_url, key = settings.provider_credentials(name)
        if key:
            variable = PROVIDER_ENV[name][0]
            adapters[name] = factory(ProviderConfig(name, base_url, key, variable))
    return adapters
