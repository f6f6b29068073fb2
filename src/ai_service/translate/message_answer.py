"""A chat answer as Anthropic's Messages API answers: the `message` object and the stream.

The other half of `translate.messages`: a chat completion becomes a
`message` (`message_object`) and a chat stream's chunks Anthropic's event
sequence (`MessageStream`). Content blocks: the reasoning
(`reasoning_content`) as a `thinking` block (with an empty signature: a chat
API signs nothing, and the reasoning is not sent back upstream), the text as
a `text` block, each tool call as a `tool_use` block (its JSON arguments
parsed as the input; arguments that are not a JSON object are an empty
input). The stop reason (`stop_reason`): stop is end_turn (a tool use when
the answer called tools: some providers say stop then), length max_tokens,
tool_calls tool_use, content_filter refusal; `stop_sequence` is always null,
as no chat API says which stop sequence matched. The usage is the one
charged, in Anthropic's terms (`usage_object`).
"""

from __future__ import annotations

import orjson

from ai_service.errors import UpstreamError
from ai_service.providers.base import JsonObject, Usage
from ai_service.sse import named

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish: object, called: bool) -> str:
    """Anthropic's `stop_reason` of a chat `finish_reason` (`called`: the answer has tool
    calls, so a plain stop is a tool use)."""
    reason = STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"
    return "tool_use" if called and reason == "end_turn" else reason


def usage_object(usage: Usage) -> JsonObject:
    """Anthropic's `usage`: the input without the cache reads and writes, counted apart."""
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    }


def tool_input(arguments: object) -> JsonObject:
    """A tool call's JSON `arguments` as a `tool_use` input (an object; {} for arguments
    that are not one)."""
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str) and arguments.strip():
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return {}
        if isinstance(parsed, dict):
            return parsed
    return {}


def tool_id(message_id: str, index: int) -> str:
    """An id for a tool call that came without one."""
    return f"toolu_{message_id.removeprefix('msg_')}_{index}"


def message_object(completion: JsonObject, message_id: str, model: str, usage: Usage) -> JsonObject:
    """A chat completion as an Anthropic `message`, with `usage` (the usage charged).

    Raises `UpstreamError` for a completion without a message.
    """
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or not isinstance(message, dict):
        raise UpstreamError("The provider sent a chat answer without a message.")
    content: list[JsonObject] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for index, call in enumerate(calls if isinstance(calls, list) else ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        given = call.get("id")
        content.append(
            {
                "type": "tool_use",
                "id": given if isinstance(given, str) and given else tool_id(message_id, index),
                "name": str(function.get("name") or ""),
                "input": tool_input(function.get("arguments")),
            }
        )
    called = any(block["type"] == "tool_use" for block in content)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), called),
        "stop_sequence": None,
        "usage": usage_object(usage),
    }


class MessageStream:
    """Chat chunks as Anthropic's stream events, in Anthropic's order.

    `opening` is `message_start` (its usage the gateway's count of the
    prompt) and a `ping`; `feed` turns a chunk's reasoning, text and tool-call
    deltas into `content_block_start` / `content_block_delta` (`thinking_delta`,
    `text_delta`, `input_json_delta`) / `content_block_stop`, one block at a
    time (a block ends when one of another kind, or another tool call,
    begins, or the choice finishes); `closing` ends the open block and sends
    `message_delta` (the stop reason and the usage charged) and `message_stop`.
    Only the first choice is read (a Messages request asks for one).
    """

    __slots__ = ("blocks", "called", "calls", "finish", "kind", "message_id", "model")

    def __init__(self, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self.blocks = 0  # blocks begun; the open one is the last
        self.kind: str | None = None  # the open block's type
        self.calls: dict[int, int] = {}  # a chat tool call's index -> its block's index
        self.called = False
        self.finish: str | None = None

    def opening(self, input_tokens: int) -> list[JsonObject]:
        usage = Usage(input_tokens=input_tokens)
        message: JsonObject = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_object(usage),
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def feed(self, chunk: JsonObject) -> list[JsonObject]:
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(choice, dict):
            return []
        out: list[JsonObject] = []
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                self._begin("thinking", {"thinking": "", "signature": ""}, out)
                out.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
            text = delta.get("content")
            if isinstance(text, str) and text:
                self._begin("text", {"text": ""}, out)
                out.append(self._delta({"type": "text_delta", "text": text}))
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, dict):
                    self._tool_call(call, out)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self.finish = finish
            self._end(out)
        return out

    def closing(self, usage: Usage) -> list[JsonObject]:
        out: list[JsonObject] = []
        self._end(out)
        delta = {"stop_reason": stop_reason(self.finish, self.called), "stop_sequence": None}
        out.append({"type": "message_delta", "delta": delta, "usage": usage_object(usage)})
        out.append({"type": "message_stop"})
        return out

    def _begin(self, kind: str, fields: JsonObject, out: list[JsonObject]) -> None:
        if self.kind == kind and kind != "tool_use":
            return
        self._end(out)
        block = {"type": kind, **fields}
        out.append({"type": "content_block_start", "index": self.blocks, "content_block": block})
        self.kind = kind
        self.blocks += 1

    def _end(self, out: list[JsonObject]) -> None:
        if self.kind is not None:
            out.append({"type": "content_block_stop", "index": self.blocks - 1})
            self.kind = None

    def _delta(self, delta: JsonObject, index: int | None = None) -> JsonObject:
        at = self.blocks - 1 if index is None else index
        return {"type": "content_block_delta", "index": at, "delta": delta}

    def _tool_call(self, call: JsonObject, out: list[JsonObject]) -> None:
        position = call.get("index")
        position = position if isinstance(position, int) else 0
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        if position not in self.calls:
            given = call.get("id")
            fields = {
                "id": given
                if isinstance(given, str) and given
                else tool_id(self.message_id, position),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            self._begin("tool_use", fields, out)
            self.calls[position] = self.blocks - 1
            self.called = True
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(self._delta(delta, self.calls[position]))


def frames(events: list[JsonObject]) -> bytes:
    """Anthropic's SSE frames of `events`: `event: <type>` and its `data:`."""
    return b"".join([named(event["type"], event) for event in events])
