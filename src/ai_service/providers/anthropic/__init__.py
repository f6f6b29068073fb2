"""The Anthropic Messages adapter: pure translation between OpenAI and Anthropic shapes.

request.py   whole body: allow-list, DROPPED_FIELDS, thinking safety
messages.py  system/developer, turns, merging, content parts, tool calls/results
tools.py     tools, tool_choice, parallel_tool_calls
options.py   sampling, stop, metadata, response_format, reasoning_effort
response.py  Message -> chat.completion, finish reasons, usage
stream.py    SSE events -> chat.completion.chunk events
passthrough.py  the Messages API surface: forwarded headers, the stream relayed as it comes
errors.py    error bodies and stream error events, read for the shared error map
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import orjson

from ai_service.errors import ServiceError, UpstreamUnavailableError
from ai_service.providers.anthropic.errors import map_error
from ai_service.providers.anthropic.passthrough import MessagesRelayParser
from ai_service.providers.anthropic.request import (
    ALLOWED_FIELDS,
    DROPPED_FIELDS,
    to_anthropic_request,
)
from ai_service.providers.anthropic.response import from_anthropic_response
from ai_service.providers.anthropic.stream import AnthropicStreamParser
from ai_service.providers.anthropic.tools import tool_prompt_tokens
from ai_service.providers.base import (
    ChatRequest,
    ChatResult,
    JsonObject,
    ProviderConfig,
    UpstreamRequest,
)

__all__ = [
    "ALLOWED_FIELDS",
    "ANTHROPIC_VERSION",
    "DROPPED_FIELDS",
    "AnthropicAdapter",
    "AnthropicStreamParser",
]

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicAdapter:
    """Implements the `Adapter` protocol for Anthropic's `/v1/messages`.

    `clock` gives the `created` timestamps (seconds); tests pass a fixed one.
    """

    def __init__(self, config: ProviderConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.name = config.name
        self._config = config
        self._clock = clock

    def build_request(self, req: ChatRequest) -> UpstreamRequest:
        """The POST to `/v1/messages`.

        Raises `UpstreamUnavailableError` (503) when no key is configured and
        `InvalidRequestError` (400) for a body that cannot be translated.
        """
        if not self._config.api_key:
            raise UpstreamUnavailableError(
                f"{self.name}: the provider is not configured (set {self._config.key_variable})"
            )
        body = to_anthropic_request(
            req.body, model=req.model, max_tokens=req.max_output_tokens, stream=req.stream
        )
        headers = {
            "x-api-key": self._config.api_key,
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
            **self._config.extra_headers,
        }
        return UpstreamRequest(
            url=self._config.base_url.rstrip("/") + "/v1/messages",
            headers=headers,
            body=orjson.dumps(body),
            hidden_tokens=tool_prompt_tokens(req.model, body),
        )

    def passthrough(
        self, path: str, body: bytes, headers: Mapping[str, str], hidden_tokens: int = 0
    ) -> UpstreamRequest:
        """A POST of a client's own Messages API body to `path` (`/v1/messages`, ...),
        with the gateway's key and the client's forwarded `anthropic-*` headers."""
        return UpstreamRequest(
            url=self._config.base_url.rstrip("/") + path,
            headers={
                **headers,
                "x-api-key": self._config.api_key or "",
                "content-type": "application/json",
                **self._config.extra_headers,
            },
            body=body,
            hidden_tokens=hidden_tokens,
        )

    def relay_parser(self) -> MessagesRelayParser:
        """The parser of a Messages stream relayed to the client unchanged."""
        return MessagesRelayParser(api_key=self._config.api_key, provider=self.name)

    def parse_response(self, data: JsonObject, req: ChatRequest) -> ChatResult:
        """The OpenAI `chat.completion`; raises `UpstreamError` for a malformed answer."""
        return from_anthropic_response(data, model=req.model, created=int(self._clock()))

    def stream_parser(self, req: ChatRequest) -> AnthropicStreamParser:
        return AnthropicStreamParser(
            model=req.model,
            created=int(self._clock()),
            api_key=self._config.api_key,
            provider=self.name,
        )

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ServiceError:
        return map_error(status, body, headers, provider=self.name, api_key=self._config.api_key)

    def embeddings_request(self, body: JsonObject, model: str) -> UpstreamRequest | None:  # noqa: ARG002
        return None  # Anthropic serves no embeddings

    def embeddings_usage(self, data: JsonObject) -> int | None:  # noqa: ARG002
        return None
