"""What a fake upstream does with the next request: the scriptable behaviours.

Tests queue these with ``fake.enqueue(...)``. Each authenticated, valid request
takes the oldest queued behaviour (FIFO); when the queue is empty the fake gives
its default answer. A behaviour is plain immutable data; the fakes interpret it
in the provider's own wire format.

    Answer            a successful answer, optionally customised (text, tool
                      calls, reasoning, usage) and optionally faulty while
                      streaming (drip delay, cut after N chunks, error event)
    ErrorReply        an HTTP error with the provider's error body
    Hang              wait before sending any header, then go on
    Malformed         invalid JSON (whole body, or one SSE event)
    WrongContentType  a non-JSON answer, e.g. a text/html 200 from a proxy
    ResetConnection   a TCP reset instead of any answer
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ToolCall:
    """One tool call the fake model makes; ``arguments`` is JSON text, as OpenAI sends it."""

    name: str
    arguments: str = "{}"
    id: str | None = None


@dataclass(frozen=True)
class Usage:
    """Usage numbers that replace the computed ones; ``None`` keeps the formula's value.

    ``cached_tokens`` is OpenAI's ``prompt_tokens_details.cached_tokens`` (a part of
    ``prompt_tokens``), DeepSeek's ``prompt_cache_hit_tokens`` and Anthropic's
    ``cache_read_input_tokens`` (in addition to ``input_tokens``, as Anthropic counts).
    ``cache_creation_tokens`` is Anthropic's ``cache_creation_input_tokens`` and
    OpenAI's ``prompt_tokens_details.cache_write_tokens`` (a part of ``prompt_tokens``,
    sent only when set). ``cache_1h_tokens`` is the part of it Anthropic reports
    as ``cache_creation.ephemeral_1h_input_tokens`` (the rest as
    ``ephemeral_5m_input_tokens``). ``service_tier`` is the tier the answer says
    served it: OpenAI's top-level ``service_tier`` (default ``"default"``),
    Anthropic's ``usage.service_tier`` (default ``"standard"``).
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_1h_tokens: int | None = None
    service_tier: str | None = None


@dataclass(frozen=True)
class ErrorReply:
    """Reply with ``status`` and the provider's error body (or ``body`` verbatim).

    Unset ``type``/``code``/``message`` take the provider's usual values for the
    status. ``retry_after`` sets the ``Retry-After`` header (seconds).
    Also used as the in-stream error of ``Answer(error_after=...)``.
    """

    status: int
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    body: object = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """A successful answer. Every unset field keeps the default answer's value.

    ``text``: the visible answer (split into stream chunks at word starts).
    ``reasoning``: DeepSeek sends it as ``reasoning_content``; OpenAI only counts
    it in ``completion_tokens_details.reasoning_tokens``; others ignore it.
    ``tool_calls``: the answer calls these tools (finish reason tool_calls/tool_use);
    without an explicit ``text`` the answer then has no text.
    ``finish_reason``: sent verbatim instead of the computed one.
    Streaming faults: ``chunk_delay`` seconds between delta chunks; ``cut_after``
    closes the connection after that many delta chunks (no terminator);
    ``error_after`` sends the provider's in-stream error event (``error``, or a
    default server/overloaded error) after that many delta chunks and ends the body.
    ``keepalive`` SSE comment lines (``: keep-alive``) are sent before the first chunk.
    ``end_delay`` seconds pass between the last event and the end of the body.
    ``web_searches``: the queries Anthropic's fake searches for (its web search
    server tool) when the request offers one; None: one search, for the last
    user message; (): none.
    ``first_delay`` seconds pass before the first delta chunk (after the stream's
    opening events: OpenAI's role chunk, Anthropic's ``message_start``), and
    ``done_delay`` before the terminator (OpenAI's ``[DONE]``, Anthropic's
    ``message_stop``), i.e. after the usage.
    """

    text: str | None = None
    reasoning: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    finish_reason: str | None = None
    chunk_delay: float = 0.0
    cut_after: int | None = None
    error_after: int | None = None
    error: ErrorReply | None = None
    keepalive: int = 0
    end_delay: float = 0.0
    first_delay: float = 0.0
    done_delay: float = 0.0
    web_searches: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Hang:
    """Wait ``seconds`` before sending any header, then do ``then`` (default answer if None)."""

    seconds: float
    then: Behaviour | None = None


@dataclass(frozen=True)
class Malformed:
    """Invalid JSON: a truncated JSON body, or for streams one broken ``data:`` event
    after ``after_chunks`` good delta chunks, then the end of the body."""

    after_chunks: int = 0


@dataclass(frozen=True)
class WrongContentType:
    """A non-JSON answer, as an HTML error page from a proxy."""

    status: int = 200
    content_type: str = "text/html"
    body: str = "<html><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass(frozen=True)
class ResetConnection:
    """Reset the TCP connection (RST) before sending any byte of the response."""


Behaviour = Answer | ErrorReply | Hang | Malformed | WrongContentType | ResetConnection
