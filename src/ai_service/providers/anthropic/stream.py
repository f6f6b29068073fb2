"""Anthropic Messages SSE events -> OpenAI `chat.completion.chunk` events.

    message_start        remember id and prompt usage (reported as the event's
                         `early_usage`, what a stream closed early is charged);
                         chunk `delta: {"role": "assistant", "content": ""}`
    content_block_start  tool_use: chunk with the tool call's `index` (0-based over tool_use
                         blocks), `id`, `type`, `function: {"name", "arguments": ""}`;
                         text/thinking: nothing unless the block starts with text
    content_block_delta  text_delta -> `content`;
                         input_json_delta -> `tool_calls[].function.arguments`;
                         thinking_delta -> `reasoning_content`; signature/citations: nothing
    content_block_stop   a tool call that got no argument fragment gets "{}" (as non-streamed)
    message_delta        usage update (cumulative `output_tokens`: the final counts, reported
                         as the event's `usage`); chunk with empty delta and the mapped
                         `finish_reason`
    ping                 an event without a chunk (the upstream is alive)
    message_stop         usage-only chunk (`choices: []`, `usage`), marked `usage_only`; done
    error                raises the mapped `ServiceError`

Unknown event types are ignored, as Anthropic's versioning policy asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

from ai_service.errors import UpstreamError
from ai_service.providers.anthropic.errors import map_stream_error
from ai_service.providers.anthropic.response import finish_reason, tool_arguments, usage_from
from ai_service.providers.base import JsonObject, StreamEvent, Usage

Handler = Callable[[dict[str, Any]], list[StreamEvent]]


class AnthropicStreamParser:
    """Parses one Anthropic stream; implements `StreamParser`."""

    def __init__(
        self, *, model: str, created: int, api_key: str | None = None, provider: str = "claude"
    ) -> None:
        self._model = model
        self._created = created
        self._api_key = api_key
        self._provider = provider
        self._id = ""
        self._usage = Usage()
        self._tool_calls: dict[int, int] = {}  # content block index -> tool call index
        self._tool_args_sent: set[int] = set()
        self._done = False
        self._handlers: dict[str, Handler] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "ping": lambda _payload: [StreamEvent(chunk=None)],
            "error": self._error,
        }

    @property
    def done(self) -> bool:
        return self._done

    @property
    def usage(self) -> Usage:
        """The usage reported so far."""
        return self._usage

    def feed(self, event: str | None, data: str, _frame: bytes | None = None) -> list[StreamEvent]:
        """Translate one SSE event; raises `ServiceError` on an upstream `error` event."""
        if self._done:
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("claude: the provider sent a malformed stream event") from exc
        if not isinstance(payload, dict):
            raise UpstreamError("claude: the provider sent a malformed stream event")
        kind = payload.get("type") or event
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        return handler(payload) if handler is not None else []

    def _message_start(self, payload: dict[str, Any]) -> list[StreamEvent]:
        message = payload.get("message")
        early: Usage | None = None
        if isinstance(message, dict):
            self._id = str(message.get("id", ""))
            if isinstance(message.get("usage"), dict):
                self._usage = usage_from(message["usage"])
                early = replace(self._usage)
        chunk = self._chunk({"role": "assistant", "content": ""})
        return [StreamEvent(chunk=chunk, early_usage=early)]

    def _block_start(self, payload: dict[str, Any]) -> list[StreamEvent]:
        block = payload.get("content_block")
        index = payload.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            return []
        kind = block.get("type")
        if kind == "tool_use":
            call = len(self._tool_calls)
            self._tool_calls[index] = call
            events = [
                StreamEvent(
                    chunk=self._tool_chunk(
                        call,
                        {
                            "id": str(block.get("id", "")),
                            "type": "function",
                            "function": {"name": str(block.get("name", "")), "arguments": ""},
                        },
                    )
                )
            ]
            if block.get("input"):
                events += self._arguments(index, tool_arguments(block["input"]))
            return events
        if kind == "text":
            return self._text(block.get("text"))
        if kind == "thinking":
            return self._thinking(block.get("thinking"))
        return []

    def _block_delta(self, payload: dict[str, Any]) -> list[StreamEvent]:
        delta = payload.get("delta")
        index = payload.get("index")
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(delta.get("text"))
        if kind == "thinking_delta":
            return self._thinking(delta.get("thinking"))
        if kind == "input_json_delta" and isinstance(index, int):
            fragment = delta.get("partial_json")
            return self._arguments(index, fragment) if isinstance(fragment, str) else []
        return []

    def _block_stop(self, payload: dict[str, Any]) -> list[StreamEvent]:
        index = payload.get("index")
        if (
            isinstance(index, int)
            and index in self._tool_calls
            and index not in self._tool_args_sent
        ):
            return self._arguments(index, tool_arguments({}))
        return []

    def _message_delta(self, payload: dict[str, Any]) -> list[StreamEvent]:
        reported: Usage | None = None
        if isinstance(payload.get("usage"), dict):
            self._usage = usage_from(payload["usage"], self._usage)
            reported = replace(self._usage)
        delta = payload.get("delta")
        reason = finish_reason(delta.get("stop_reason")) if isinstance(delta, dict) else None
        if reason is None:
            return [StreamEvent(chunk=None, usage=reported)] if reported is not None else []
        return [StreamEvent(chunk=self._chunk({}, reason), usage=reported)]

    def _message_stop(self, _payload: dict[str, Any]) -> list[StreamEvent]:
        self._done = True
        chunk: JsonObject = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [],
            "usage": self._usage.to_openai(),
        }
        return [StreamEvent(chunk=chunk, usage=self._usage, usage_only=True)]

    def _error(self, payload: dict[str, Any]) -> list[StreamEvent]:
        raise map_stream_error(payload, provider=self._provider, api_key=self._api_key)

    def _text(self, text: object) -> list[StreamEvent]:
        if not isinstance(text, str) or not text:
            return []
        return [StreamEvent(chunk=self._chunk({"content": text}), text=text, generated=len(text))]

    def _thinking(self, text: object) -> list[StreamEvent]:
        if not isinstance(text, str) or not text:
            return []
        chunk = self._chunk({"reasoning_content": text})
        return [StreamEvent(chunk=chunk, generated=len(text))]

    def _arguments(self, index: int, fragment: str) -> list[StreamEvent]:
        call = self._tool_calls.get(index)
        if call is None or not fragment:
            return []
        self._tool_args_sent.add(index)
        chunk = self._tool_chunk(call, {"function": {"arguments": fragment}})
        return [StreamEvent(chunk=chunk, generated=len(fragment))]

    def _tool_chunk(self, call: int, fields: JsonObject) -> JsonObject:
        return self._chunk({"tool_calls": [{"index": call, **fields}]})

    def _chunk(self, delta: JsonObject, reason: str | None = None) -> JsonObject:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
        }
