"""The provider registry: one entry per provider, as one explicit literal.

An entry is all a provider needs: its path segment (the key), its adapter,
the variables of its key and base URL, and its default base URL. The settings
(`ai_service.config`), the paths the routes accept, `/models`, the admin
catalog, the dashboard and the CLI all read this literal; adding a provider is
adding its entry (and its adapter module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ai_service.providers.anthropic import AnthropicAdapter
from ai_service.providers.anthropic.server_tools import use_prices as anthropic_use_prices
from ai_service.providers.base import Adapter, ProviderConfig, ProviderSpec
from ai_service.providers.deepseek import DeepSeekAdapter
from ai_service.providers.mistral import MistralAdapter
from ai_service.providers.openai import OpenAIAdapter
from ai_service.providers.together import TogetherAdapter

if TYPE_CHECKING:
    from ai_service.billing.pricing import UsePrices
    from ai_service.config import Settings

REGISTRY: dict[str, ProviderSpec] = {
    "openai": ProviderSpec(
        OpenAIAdapter,
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "https://api.openai.com/v1",
        aliases=("v1",),  # the legacy unified path
        embeddings=True,
        token_ids=True,
        native=frozenset({"responses"}),
    ),
    "claude": ProviderSpec(
        AnthropicAdapter,
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "https://api.anthropic.com",
        native=frozenset({"messages"}),
        otel_name="anthropic",
    ),
    "mistral": ProviderSpec(
        MistralAdapter,
        "MISTRAL_API_KEY",
        "MISTRAL_BASE_URL",
        "https://api.mistral.ai/v1",
        embeddings=True,
        otel_name="mistral_ai",
    ),
    "llama": ProviderSpec(
        TogetherAdapter,
        "TOGETHER_API_KEY",
        "TOGETHER_BASE_URL",
        "https://api.together.xyz/v1",
        embeddings=True,
        otel_name="together_ai",
    ),
    "deepseek": ProviderSpec(
        DeepSeekAdapter, "DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL", "https://api.deepseek.com"
    ),
}

# every path segment a client may use -> the provider it reaches
PATHS: dict[str, str] = {
    path: name for name, spec in REGISTRY.items() for path in (name, *spec.aliases)
}


def configured(settings: Settings) -> dict[str, Adapter]:
    """Adapters for every provider whose API key is set."""
    adapters: dict[str, Adapter] = {}
    for name, spec in REGISTRY.items():
        base_url, key = settings.provider_credentials(name)
        if key:
            adapters[name] = spec.adapter(ProviderConfig(name, base_url, key, spec.key_variable))
    return adapters


def use_prices(settings: Settings) -> dict[str, UsePrices]:
    """The per-use prices of the server tools each provider bills per use, by provider."""
    return {"claude": anthropic_use_prices(settings.anthropic_web_search_usd_per_1k)}


def paths_serving(endpoint: str) -> str:
    """The provider paths that serve `endpoint` (`/ai/openai/embeddings, ...`), for the
    answer of the others."""
    return ", ".join(
        f"/ai/{name}/{endpoint}" for name, spec in REGISTRY.items() if spec.serves(endpoint)
    )
