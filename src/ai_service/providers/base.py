"""The provider contract: neutral request, result, usage and stream-event types.

An adapter is pure: it turns the client's OpenAI-shaped body into the upstream's
HTTP request, the upstream's JSON answer into an OpenAI `chat.completion`, and
the upstream's server-sent events into OpenAI `chat.completion.chunk` events.
It never opens a connection; `ai_service.upstream` does the I/O for every
adapter with the one shared HTTP client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ai_service.errors import ServiceError

JsonObject = dict[str, Any]


@dataclass(slots=True)
class Usage:
    """Token usage normalized across providers.

    `input_tokens` counts the uncached prompt tokens only; cache reads and cache
    writes are counted apart so that each is priced at its own rate.
    `output_tokens` includes `reasoning_tokens`. `cache_write_1h_tokens` is the
    part of `cache_write_tokens` written with a 1-hour lifetime (Anthropic),
    priced at its own rate. `service_tier` is the tier the provider says served
    the request (OpenAI's and Anthropic's `service_tier`), which selects the
    price where the provider charges tiers differently. `tool_uses` counts the
    uses of the provider's server tools by kind (Anthropic's
    `server_tool_use.web_search_requests` as `("web_search", n)`), sorted by
    kind; a kind with a per-use price is billed that price per use.
    """

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    service_tier: str | None = None
    tool_uses: tuple[tuple[str, int], ...] = ()

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    def to_openai(self) -> JsonObject:
        """The OpenAI `usage` object, with the detail fields where they are non-zero."""
        usage: JsonObject = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cache_read_tokens or self.cache_write_tokens:
            details: JsonObject = {"cached_tokens": self.cache_read_tokens}
            if self.cache_write_tokens:
                details["cache_creation_tokens"] = self.cache_write_tokens
            usage["prompt_tokens_details"] = details
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage


@dataclass(slots=True)
class ChatRequest:
    """A validated client request, ready for an adapter.

    `body` is the client's OpenAI-shaped JSON object as received. `model` is the
    resolved upstream model id and `max_output_tokens` the output limit the
    gateway reserved for, which the adapter must send upstream in the
    provider's own field.
    """

    body: JsonObject
    model: str
    stream: bool
    max_output_tokens: int


@dataclass(slots=True)
class UpstreamRequest:
    """One HTTP POST to the provider.

    `choices` is how many answers the provider generates (and bills), each up
    to the output limit: OpenAI's `n` where the provider is sent it.
    `hidden_tokens` counts the prompt tokens the provider adds without their
    appearing in the body (Anthropic's tool-use system prompt). Both feed the
    reservation's bound (`ai_service.billing.estimate`). `method` is POST
    but for a read (the Responses API's `GET /responses/{id}`).
    """

    url: str
    headers: dict[str, str]
    body: bytes
    choices: int = 1
    hidden_tokens: int = 0
    method: str = "POST"


@dataclass(slots=True)
class ChatResult:
    """A non-streamed answer: the OpenAI `chat.completion` object and its usage."""

    completion: JsonObject
    usage: Usage | None


@dataclass(slots=True)
class StreamEvent:
    """One normalized stream event.

    `chunk` is an OpenAI `chat.completion.chunk` to forward (None for events
    that carry nothing for the client, such as pings). `text` is the content
    delta it carries (the top-level `content` of the dual chunk shape) and
    `generated` counts the characters of generated output in it (content,
    reasoning and tool-call arguments) for the estimate made when no usage
    arrives. `usage` is set on the event that reports the final usage; a chunk
    whose only purpose is usage has `usage_only` set. `early_usage` is usage
    the provider reports before the end (Anthropic's `message_start`: the
    prompt, its cache reads and writes, the output so far), charged for a
    stream that ends before its final usage. A surface relayed event for event
    (the Responses and Messages APIs) keeps each event's bytes in `frame`, and the generated
    text other than content (reasoning, tool-call arguments) in
    `generated_text`, as it has no chunk to find it in.
    """

    chunk: JsonObject | None
    text: str = ""
    generated: int = 0
    usage: Usage | None = None
    usage_only: bool = False
    early_usage: Usage | None = None
    frame: bytes | None = None
    generated_text: str = ""


class StreamParser(Protocol):
    """Turns upstream SSE events into normalized events; one per stream."""

    def feed(self, event: str | None, data: str, frame: bytes | None = None) -> list[StreamEvent]:
        """Parse one SSE event (`event:` name, if any, and its `data:`); `frame` is the
        event's bytes as received, blank line included, when they are exactly those two.

        Raises `ServiceError` when the upstream sends an error event.
        """
        ...

    @property
    def done(self) -> bool:
        """True once the upstream has signalled the end of the stream."""
        ...


class Adapter(Protocol):
    """What one provider must supply: request building and response parsing."""

    name: str

    def build_request(self, req: ChatRequest) -> UpstreamRequest: ...

    def parse_response(self, data: JsonObject, req: ChatRequest) -> ChatResult: ...

    def stream_parser(self, req: ChatRequest) -> StreamParser: ...

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ServiceError: ...

    def embeddings_request(self, body: JsonObject, model: str) -> UpstreamRequest | None:
        """An embeddings request for `model` (None: the provider serves no embeddings)."""
        ...

    def embeddings_usage(self, data: JsonObject) -> int | None:
        """The input tokens an embeddings answer reports (None: it reports none)."""
        ...


@dataclass(slots=True)
class ProviderConfig:
    """Credentials and base URL of one provider, as the settings give them."""

    name: str
    base_url: str
    api_key: str | None
    key_variable: str
    extra_headers: dict[str, str] = field(default_factory=dict)


# endpoints that only the providers flagged for them serve
SURFACE_FLAGS = frozenset({"embeddings"})


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """Everything the gateway knows about one provider: one entry of `providers.REGISTRY`.

    The entry's key is the provider's path segment (`/ai/<path>/...`); `aliases`
    are further segments that reach it. The key's and the base URL's variables
    are also the settings `<variable lowercased>` and `AI_SERVICE_<variable>`.
    """

    adapter: Callable[[ProviderConfig], Adapter]
    key_variable: str
    url_variable: str
    default_url: str
    aliases: tuple[str, ...] = ()
    embeddings: bool = False  # whether it serves `POST /embeddings` (OpenAI's shape)
    token_ids: bool = False  # whether its embeddings take `input` as arrays of token ids
    # the API surfaces beyond chat that its upstream speaks itself ("responses", "messages"):
    # passed through; every other surface reaches it translated to and from its chat API
    native: frozenset[str] = frozenset()
    # its `gen_ai.provider.name` in OpenTelemetry's GenAI conventions, where not its key
    otel_name: str | None = None

    def speaks(self, surface: str) -> bool:
        """Whether the upstream speaks `surface` itself (else it is translated through chat)."""
        return surface in self.native

    def serves(self, endpoint: str) -> bool:
        """Whether this provider's path serves `endpoint` (`responses/{id}` is `responses`'s):
        the endpoints a flag names only where it is set, every other one everywhere."""
        flag = endpoint.split("/")[0]
        return flag not in SURFACE_FLAGS or bool(getattr(self, flag))

    @property
    def key_setting(self) -> str:
        return self.key_variable.lower()

    @property
    def url_setting(self) -> str:
        return self.url_variable.lower()
