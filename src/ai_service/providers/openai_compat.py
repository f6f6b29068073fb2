"""The adapter shared by every OpenAI-compatible upstream (OpenAI, Mistral, Together, DeepSeek).

The client's body goes upstream as it is, apart from the model id, the output
limit the gateway reserved for, and `stream_options` (usage is always asked
for where the provider supports it). Each provider's documented differences
are a `Quirks` value, declared in that provider's own module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ai_service.errors import ServiceError, UpstreamError
from ai_service.providers.base import (
    ChatRequest,
    ChatResult,
    JsonObject,
    ProviderConfig,
    StreamEvent,
    UpstreamRequest,
    Usage,
)
from ai_service.providers.errors import map_status, upstream_message

BodyHook = Callable[[JsonObject, ChatRequest], None]


def _no_hook(_body: JsonObject, _req: ChatRequest) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Quirks:
    """How one OpenAI-compatible provider differs from OpenAI's own API."""

    # field that carries the output limit: "max_tokens" or "max_completion_tokens"
    limit_field: str = "max_tokens"
    # models (by prefix) that take max_completion_tokens instead of max_tokens
    completion_limit_prefixes: tuple[str, ...] = ()
    # whether `stream_options: {"include_usage": true}` is accepted
    stream_usage_option: bool = True
    # request fields the provider rejects, dropped before sending
    dropped_fields: frozenset[str] = frozenset()
    # last-minute provider-specific rewrite of the body (pure; mutates the copy)
    rewrite: BodyHook = field(default=_no_hook)


def parse_usage(data: Mapping[str, Any]) -> Usage:
    """Normalize an OpenAI-style usage object (with DeepSeek's cache fields)."""
    prompt = int(data.get("prompt_tokens") or 0)
    completion = int(data.get("completion_tokens") or 0)
    cached = 0
    details = data.get("prompt_tokens_details")
    if isinstance(details, dict):
        cached = int(details.get("cached_tokens") or 0)
    hit = data.get("prompt_cache_hit_tokens")
    if hit is not None:
        cached = int(hit)
    reasoning = 0
    out_details = data.get("completion_tokens_details")
    if isinstance(out_details, dict):
        reasoning = int(out_details.get("reasoning_tokens") or 0)
    cached = min(cached, prompt)
    return Usage(
        input_tokens=prompt - cached,
        cache_read_tokens=cached,
        output_tokens=completion,
        reasoning_tokens=reasoning,
    )


def build_body(req: ChatRequest, quirks: Quirks) -> JsonObject:
    """The upstream JSON body for a client's request (a shallow copy, never the original)."""
    body = dict(req.body)
    body["model"] = req.model
    for name in quirks.dropped_fields:
        body.pop(name, None)
    limit_field = quirks.limit_field
    if quirks.completion_limit_prefixes and req.model.startswith(quirks.completion_limit_prefixes):
        limit_field = "max_completion_tokens"
    body.pop("max_tokens", None)
    body.pop("max_completion_tokens", None)
    body[limit_field] = req.max_output_tokens
    if req.stream:
        body["stream"] = True
        if quirks.stream_usage_option:
            options = body.get("stream_options")
            options = dict(options) if isinstance(options, dict) else {}
            options["include_usage"] = True
            body["stream_options"] = options
        else:
            body.pop("stream_options", None)
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    quirks.rewrite(body, req)
    return body


def _generated(delta: Mapping[str, Any]) -> tuple[str, int]:
    text = delta.get("content")
    text = text if isinstance(text, str) else ""
    count = len(text)
    reasoning = delta.get("reasoning_content")
    if isinstance(reasoning, str):
        count += len(reasoning)
    tool_calls = delta.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                count += len(function.get("arguments") or "") + len(function.get("name") or "")
    return text, count


class CompatStreamParser:
    """Parses an OpenAI-style `chat.completion.chunk` stream ending in `data: [DONE]`."""

    def __init__(self, adapter: OpenAICompatAdapter) -> None:
        self._adapter = adapter
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: str | None, data: str) -> list[StreamEvent]:
        if data == "[DONE]":
            self._done = True
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"The {self._adapter.name} provider sent malformed data.") from exc
        if not isinstance(chunk, dict):
            raise UpstreamError(f"The {self._adapter.name} provider sent malformed data.")
        if event == "error" or "error" in chunk:
            raise self._adapter.stream_error(chunk)
        usage_data = chunk.get("usage")
        usage = parse_usage(usage_data) if isinstance(usage_data, dict) else None
        choices = chunk.get("choices")
        if not choices:
            return [StreamEvent(chunk, usage=usage, usage_only=usage is not None)]
        delta = choices[0].get("delta") or {}
        text, count = _generated(delta)
        return [StreamEvent(chunk, text=text, generated=count, usage=usage)]


class OpenAICompatAdapter:
    """One OpenAI-compatible provider: its config plus its quirks."""

    def __init__(self, config: ProviderConfig, quirks: Quirks | None = None) -> None:
        self.name = config.name
        self.config = config
        self.quirks = quirks or Quirks()
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._headers = {
            "Authorization": f"Bearer {config.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            **config.extra_headers,
        }

    def build_request(self, req: ChatRequest) -> UpstreamRequest:
        body = build_body(req, self.quirks)
        return UpstreamRequest(self._url, self._headers, orjson.dumps(body))

    def parse_response(self, data: JsonObject, _req: ChatRequest) -> ChatResult:
        if not isinstance(data.get("choices"), list):
            raise UpstreamError(f"The {self.name} provider sent an answer without choices.")
        usage_data = data.get("usage")
        usage = parse_usage(usage_data) if isinstance(usage_data, dict) else None
        return ChatResult(data, usage)

    def stream_parser(self, _req: ChatRequest) -> CompatStreamParser:
        return CompatStreamParser(self)

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ServiceError:
        return map_status(self.name, status, upstream_message(body), headers)

    def stream_error(self, chunk: JsonObject) -> ServiceError:
        """The error an in-stream `{"error": ...}` event stands for."""
        error = chunk.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        text = message if isinstance(message, str) else "stream failed"
        return UpstreamError(f"{self.name}: {text}")
