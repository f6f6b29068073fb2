"""The adapter shared by every OpenAI-compatible upstream (OpenAI, Mistral, Together, DeepSeek).

The client's body goes upstream as it is, apart from the model id, the output
limit the gateway reserved for, `stream_options` (usage is always asked for
where the provider accepts the option) and each provider's documented
differences. Those differences are a `Quirks` value, declared in the
provider's own module: plain data for the common kinds (renamed or rejected
fields, role and enum values, per-role message fields) and one pure `rewrite`
hook for the rest.

Answers are normalized back to OpenAI's shape: the reasoning text always in
`reasoning_content`, OpenAI's finish reasons, string content and tool-call
arguments, indexed tool-call deltas, and stream usage on a chunk of its own
(`choices: []`) wherever the provider sends it.
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
from ai_service.providers.errors import map_status, parse_error_body, redact

BodyHook = Callable[[JsonObject, ChatRequest], None]

# top-level fields copied onto the usage chunk split off a provider's last chunk
_CHUNK_HEAD = ("id", "object", "created", "model", "system_fingerprint", "service_tier")


def _no_hook(_body: JsonObject, _req: ChatRequest) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Quirks:
    """How one OpenAI-compatible provider differs from OpenAI's own API."""

    # -- request --
    # field that carries the output limit: "max_tokens" or "max_completion_tokens"
    limit_field: str = "max_tokens"
    # whether `stream_options: {"include_usage": true}` is accepted
    stream_usage_option: bool = True
    # whether the `developer` role is accepted; if not it is sent as `system`
    developer_role: bool = True
    # OpenAI field -> the provider's name for it (the provider's own name wins if both are sent)
    renamed_fields: Mapping[str, str] = field(default_factory=dict)
    # request fields the provider rejects, dropped before sending
    dropped_fields: frozenset[str] = frozenset()
    # if set, the only top-level fields the provider accepts (it rejects any other)
    accepted_fields: frozenset[str] | None = None
    # role -> the only message fields the provider accepts for it
    message_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # string `tool_choice` values the provider spells differently
    tool_choices: Mapping[str, str] = field(default_factory=dict)
    # `reasoning_effort` values the provider spells differently (None: drop the field)
    reasoning_efforts: Mapping[str, str | None] = field(default_factory=dict)
    # last-minute provider-specific rewrite of the body (pure; mutates the copy)
    rewrite: BodyHook = field(default=_no_hook)
    # -- response --
    # the provider's name for the reasoning text of a message or delta
    reasoning_field: str = "reasoning_content"
    # the provider's finish reasons that OpenAI spells differently
    finish_reasons: Mapping[str, str] = field(default_factory=dict)
    # streamed tool calls arrive whole, without a reliable `index`: number them
    index_tool_calls: bool = False


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _detail(data: Mapping[str, Any], outer: str, inner: str) -> int:
    details = data.get(outer)
    return _count(details.get(inner)) if isinstance(details, dict) else 0


def parse_usage(data: Mapping[str, Any], service_tier: object = None) -> Usage:
    """Normalize an OpenAI-style usage object (OpenAI's details, DeepSeek's cache fields).

    OpenAI counts cache reads (`prompt_tokens_details.cached_tokens`) and cache
    writes (`prompt_tokens_details.cache_write_tokens`, on the models that bill
    them) inside `prompt_tokens`. `service_tier` is the answer's top-level
    `service_tier` (OpenAI: the tier that served the request).
    """
    hit, miss = data.get("prompt_cache_hit_tokens"), data.get("prompt_cache_miss_tokens")
    prompt = _count(data.get("prompt_tokens")) or _count(hit) + _count(miss)
    if hit is not None:
        cached = _count(hit)
    else:
        cached = _detail(data, "prompt_tokens_details", "cached_tokens")
    cached = min(cached, prompt)
    written = min(_detail(data, "prompt_tokens_details", "cache_write_tokens"), prompt - cached)
    return Usage(
        input_tokens=prompt - cached - written,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        output_tokens=_count(data.get("completion_tokens")),
        reasoning_tokens=_detail(data, "completion_tokens_details", "reasoning_tokens"),
        service_tier=service_tier if isinstance(service_tier, str) else None,
    )


def _message(message: object, quirks: Quirks) -> object:
    if not isinstance(message, dict):
        return message
    role = message.get("role")
    if role == "developer" and not quirks.developer_role:
        message = {**message, "role": "system"}
        role = "system"
    allowed = quirks.message_fields.get(role) if isinstance(role, str) else None
    if allowed is not None and not allowed.issuperset(message):
        message = {key: value for key, value in message.items() if key in allowed}
    return message


def build_body(req: ChatRequest, quirks: Quirks) -> JsonObject:
    """The upstream JSON body for a client's request (a copy: `req.body` is never changed)."""
    body = dict(req.body)
    body["model"] = req.model
    body.pop("max_tokens", None)
    body.pop("max_completion_tokens", None)
    body[quirks.limit_field] = req.max_output_tokens
    options = body.pop("stream_options", None)
    body.pop("stream", None)
    if req.stream:
        body["stream"] = True
        if quirks.stream_usage_option:  # usage always, whether or not the client asked
            options = options if isinstance(options, dict) else {}
            body["stream_options"] = {**options, "include_usage": True}
    for name, native in quirks.renamed_fields.items():
        if name in body:
            value = body.pop(name)
            body.setdefault(native, value)
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice in quirks.tool_choices:
        body["tool_choice"] = quirks.tool_choices[choice]
    effort = body.get("reasoning_effort")
    if isinstance(effort, str) and effort in quirks.reasoning_efforts:
        mapped = quirks.reasoning_efforts[effort]
        if mapped is None:
            del body["reasoning_effort"]
        else:
            body["reasoning_effort"] = mapped
    messages = body.get("messages")
    if isinstance(messages, list) and (quirks.message_fields or not quirks.developer_role):
        body["messages"] = [_message(message, quirks) for message in messages]
    for name in quirks.dropped_fields:
        body.pop(name, None)
    if quirks.accepted_fields is not None:
        body = {key: value for key, value in body.items() if key in quirks.accepted_fields}
    quirks.rewrite(body, req)
    return body


def _parts_text(parts: list[Any], kind: str) -> str:
    """The text of the `kind` parts of a content list (Mistral's text / thinking chunks)."""
    texts: list[str] = []
    for part in parts:
        if not isinstance(part, dict) or part.get("type") != kind:
            continue
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "thinking" and isinstance(part.get(kind), list):
            texts.append(_parts_text(part[kind], "text"))
    return "".join(texts)


def normalize_message(message: JsonObject, quirks: Quirks) -> JsonObject:
    """Put a response message or stream delta in OpenAI's shape, in place; returns it."""
    if quirks.reasoning_field != "reasoning_content" and quirks.reasoning_field in message:
        message["reasoning_content"] = message.pop(quirks.reasoning_field)
    content = message.get("content")
    if isinstance(content, list):
        message["content"] = _parts_text(content, "text")
        thinking = _parts_text(content, "thinking")
        if thinking:
            message["reasoning_content"] = message.get("reasoning_content") or thinking
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), dict):
            function["arguments"] = orjson.dumps(function["arguments"]).decode()
    return message


def _choice(choice: object, part: str, quirks: Quirks) -> JsonObject | None:
    """Normalize one choice in place; returns its `part` (`message` or `delta`) if any."""
    if not isinstance(choice, dict):
        return None
    reason = choice.get("finish_reason")
    if isinstance(reason, str) and reason in quirks.finish_reasons:
        choice["finish_reason"] = quirks.finish_reasons[reason]
    inner = choice.get(part)
    return normalize_message(inner, quirks) if isinstance(inner, dict) else None


def _plain_text_delta(choice: object, quirks: Quirks) -> str | None:
    """The text of the commonest stream chunk (one choice, a text-only delta), else None.

    The fast path of `CompatStreamParser.feed`: such a chunk needs no
    normalization beyond its finish reason.
    """
    if type(choice) is not dict:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict:
        return None
    text = delta.get("content", "")
    if type(text) is not str or len(delta) > 2 or (len(delta) == 2 and "role" not in delta):
        return None
    if len(delta) == 1 and "content" not in delta and "role" not in delta:
        return None
    reason = choice.get("finish_reason")
    if reason is not None and reason in quirks.finish_reasons:
        choice["finish_reason"] = quirks.finish_reasons[reason]
    return text


def _generated(delta: Mapping[str, Any]) -> tuple[str, int]:
    """The text delta and the count of generated characters (text, reasoning, tool calls)."""
    text = delta["content"] if isinstance(delta.get("content"), str) else ""
    reasoning = delta.get("reasoning_content")
    count = len(text) + (len(reasoning) if isinstance(reasoning, str) else 0)
    calls = delta.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            count += len(function.get("arguments") or "") + len(function.get("name") or "")
    return text, count


class CompatStreamParser:
    """Parses an OpenAI-style `chat.completion.chunk` stream ending in `data: [DONE]`."""

    def __init__(self, adapter: OpenAICompatAdapter) -> None:
        self._adapter = adapter
        self._quirks = adapter.quirks
        self._done = False
        self._calls: dict[int, int] = {}  # choice index -> tool calls seen (index_tool_calls)

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: str | None, data: str, _frame: bytes | None = None) -> list[StreamEvent]:
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
        choices = chunk.get("choices")
        if usage_data is None and type(choices) is list and len(choices) == 1:
            plain = _plain_text_delta(choices[0], self._quirks)
            if plain is not None:
                return [StreamEvent(chunk, text=plain, generated=len(plain))]
        usage = (
            parse_usage(usage_data, chunk.get("service_tier"))
            if isinstance(usage_data, dict)
            else None
        )
        if not isinstance(choices, list) or not choices:
            return [StreamEvent(chunk, usage=usage, usage_only=usage is not None)]
        text, count = "", 0
        for position, choice in enumerate(choices):
            delta = _choice(choice, "delta", self._quirks)
            if delta is None:
                continue
            if self._quirks.index_tool_calls:
                self._index_calls(choice.get("index", position), delta)
            piece, generated = _generated(delta)
            text, count = (piece if position == 0 else text), count + generated
        if usage is None:
            return [StreamEvent(chunk, text=text, generated=count)]
        # usage rides on a chunk with choices (Mistral, Together, DeepSeek): split it off,
        # so the client gets it where OpenAI puts it, and only when it asked for it
        del chunk["usage"]
        tail = {key: chunk[key] for key in _CHUNK_HEAD if key in chunk}
        tail.update(choices=[], usage=usage_data)
        return [
            StreamEvent(chunk, text=text, generated=count),
            StreamEvent(tail, usage=usage, usage_only=True),
        ]

    def _index_calls(self, choice: object, delta: JsonObject) -> None:
        calls = delta.get("tool_calls")
        key = choice if isinstance(choice, int) else 0
        for call in calls if isinstance(calls, list) else ():
            if not isinstance(call, dict):
                continue
            seen = self._calls.get(key, 0)
            if call.get("id"):
                self._calls[key] = seen + 1
                call["index"] = seen
            else:
                call["index"] = max(seen - 1, 0)


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

    @property
    def headers(self) -> dict[str, str]:
        """The headers of every request to the provider (its key among them)."""
        return self._headers

    def build_request(self, req: ChatRequest) -> UpstreamRequest:
        body = build_body(req, self.quirks)
        n = body.get("n")
        choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
        return UpstreamRequest(self._url, self._headers, orjson.dumps(body), choices=choices)

    def parse_response(self, data: JsonObject, _req: ChatRequest) -> ChatResult:
        choices = data.get("choices")
        if not isinstance(choices, list):
            raise UpstreamError(f"The {self.name} provider sent an answer without choices.")
        for choice in choices:
            _choice(choice, "message", self.quirks)
        usage_data = data.get("usage")
        usage = (
            parse_usage(usage_data, data.get("service_tier"))
            if isinstance(usage_data, dict)
            else None
        )
        return ChatResult(data, usage)

    def stream_parser(self, _req: ChatRequest) -> CompatStreamParser:
        return CompatStreamParser(self)

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ServiceError:
        return map_status(self.name, status, parse_error_body(body), headers, self.config.api_key)

    def stream_error(self, chunk: JsonObject) -> ServiceError:
        """The error an in-stream `{"error": ...}` event stands for."""
        text = parse_error_body(orjson.dumps(chunk)).message or "stream failed"
        return UpstreamError(f"{self.name}: {redact(text, self.config.api_key)}")

    def embeddings_request(self, body: JsonObject, model: str) -> UpstreamRequest | None:
        """The client's embeddings body for `model`, sent as it is (`REGISTRY` says which
        providers serve embeddings)."""
        url = self.config.base_url.rstrip("/") + "/embeddings"
        return UpstreamRequest(url, self._headers, orjson.dumps({**body, "model": model}))

    def embeddings_usage(self, data: JsonObject) -> int | None:
        """The input tokens an embeddings answer reports (None: it reports none)."""
        usage = data.get("usage")
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0:
            return tokens
        return None
