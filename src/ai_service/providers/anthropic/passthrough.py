"""Anthropic's own Messages API, passed through: the headers forwarded, the stream relayed.

A client of the Messages surface speaks Anthropic's wire format, so its body
goes upstream as it came (`services.messages` re-encodes it only to change
the model id or the output limit). What is forwarded besides the body:

- `anthropic-version`: the client's, else `DEFAULT_VERSION`.
- `anthropic-beta`: the values in `BETAS` only; the others are dropped (and
  named to the client in `X-Dropped-Anthropic-Beta`). A beta is allowed when
  everything it can change is billed from the usage the gateway reads and
  bounded by its reservation: `web-fetch-2025-09-10` enables the web fetch
  tool, which `server_tools` bounds and bills. Left out: long context
  (`context-1m-*`, priced above the catalog's rates past 200k tokens),
  server-run tools and files billed by container time or stored under the
  gateway's one key (`code-execution-*`, `mcp-client-*`, `files-api-*`,
  `skills-*`) and `oauth-*` (the upstream key is the gateway's own).

The stream is relayed event for event: `MessagesRelayParser` hands each event
on as the bytes `event: <name>\\ndata: <json>\\n\\n` and parses only the events
that carry usage (`message_start`, `message_delta`), the end (`message_stop`),
errors and the results of server tools (each a use Anthropic bills, counted
for a stream that ends before its final usage); text deltas are kept
unparsed, read only when a stream without its final usage is settled.
"""

from __future__ import annotations

from dataclasses import replace

import orjson

from ai_service.errors import UpstreamError
from ai_service.providers.anthropic.errors import map_stream_error
from ai_service.providers.anthropic.response import usage_from
from ai_service.providers.base import StreamEvent, Usage
from ai_service.sse import text_event

DEFAULT_VERSION = "2023-06-01"
BETAS = frozenset(
    {
        "claude-code-20250219",
        "context-management-2025-06-27",
        "extended-cache-ttl-2025-04-11",
        "fine-grained-tool-streaming-2025-05-14",
        "interleaved-thinking-2025-05-14",
        "output-128k-2025-02-19",
        "prompt-caching-2024-07-31",
        "token-efficient-tools-2025-02-19",
        "web-fetch-2025-09-10",
    }
)


def forwarded_headers(version: str | None, beta: str | None) -> tuple[dict[str, str], list[str]]:
    """The `anthropic-*` headers sent upstream, and the beta values dropped."""
    headers = {"anthropic-version": version or DEFAULT_VERSION}
    kept: list[str] = []
    dropped: list[str] = []
    for value in (beta or "").split(","):
        name = value.strip()
        if name:
            (kept if name in BETAS else dropped).append(name)
    if kept:
        headers["anthropic-beta"] = ",".join(kept)
    return headers, dropped


class MessagesRelayParser:
    """Relays one Anthropic stream; implements `StreamParser`.

    Each event becomes a `StreamEvent` whose `frame` is its SSE bytes. The
    usage of `message_start` is the event's `early_usage`, that of
    `message_delta` (cumulative) its `usage`. Raises the mapped `ServiceError`
    on an `error` event.
    """

    __slots__ = ("_api_key", "_done", "_provider", "_usage", "deltas", "stop_reason")

    def __init__(self, *, api_key: str | None = None, provider: str = "claude") -> None:
        self._api_key = api_key
        self._provider = provider
        self._done = False
        self._usage = Usage()
        self.deltas: list[str] = []  # the data of `content_block_delta` events, unparsed
        self.stop_reason: str | None = None

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: str | None, data: str, frame: bytes | None = None) -> list[StreamEvent]:
        if self._done:
            return []
        if frame is None:
            frame = text_event(event, data)
        if event == "content_block_delta":
            self.deltas.append(data)
            return [StreamEvent(None, frame=frame)]
        if event == "content_block_start" and "_tool_result" in data:
            return [self._tool_result(data, frame)]
        if event not in USAGE_EVENTS:
            return [StreamEvent(None, frame=frame)]
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"{self._provider}: the provider sent a malformed event") from exc
        if not isinstance(payload, dict):
            raise UpstreamError(f"{self._provider}: the provider sent a malformed event")
        kind = payload.get("type") or event
        if kind == "message_start":
            message = payload.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._usage = usage_from(usage)
                return [StreamEvent(None, frame=frame, early_usage=replace(self._usage))]
        elif kind == "message_delta":
            delta = payload.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if isinstance(reason, str):
                self.stop_reason = reason
            usage = payload.get("usage")
            if isinstance(usage, dict):
                self._usage = usage_from(usage, self._usage)
                return [StreamEvent(None, frame=frame, usage=replace(self._usage))]
        elif kind == "message_stop":
            self._done = True
        elif kind == "error":
            raise map_stream_error(payload, provider=self._provider, api_key=self._api_key)
        elif kind == "content_block_delta":  # an unnamed event
            self.deltas.append(data)
        return [StreamEvent(None, frame=frame)]

    def _tool_result(self, data: str, frame: bytes) -> StreamEvent:
        """A server tool's result: a use Anthropic bills, counted into the early usage
        (charged if the stream ends before its final usage)."""
        try:
            block = orjson.loads(data).get("content_block")
        except (orjson.JSONDecodeError, AttributeError):
            return StreamEvent(None, frame=frame)
        kind = block.get("type") if isinstance(block, dict) else None
        content = block.get("content") if isinstance(block, dict) else None
        used = (kind == "web_search_tool_result" and isinstance(content, list)) or (
            kind == "web_fetch_tool_result"
            and isinstance(content, dict)
            and content.get("type") == "web_fetch_result"
        )
        if not used:  # an error result (`max_uses_exceeded`, ...) is not billed
            return StreamEvent(None, frame=frame)
        name = str(kind).removesuffix("_tool_result")
        counts = dict(self._usage.tool_uses)
        counts[name] = counts.get(name, 0) + 1
        self._usage = replace(self._usage, tool_uses=tuple(sorted(counts.items())))
        return StreamEvent(None, frame=frame, early_usage=replace(self._usage))

    def output(self) -> tuple[str, str]:
        """The text delivered, and the other output (thinking, tool input), from the deltas."""
        texts: list[str] = []
        other: list[str] = []
        for data in self.deltas:
            try:
                delta = orjson.loads(data).get("delta")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if not isinstance(delta, dict):
                continue
            for field, into in (("text", texts), ("thinking", other), ("partial_json", other)):
                value = delta.get(field)
                if isinstance(value, str):
                    into.append(value)
        return "".join(texts), "".join(other)


# the events parsed; `None` is an event without a name (read from its `type`)
USAGE_EVENTS = frozenset({"message_start", "message_delta", "message_stop", "error", None})
