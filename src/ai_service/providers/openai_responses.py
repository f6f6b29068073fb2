"""OpenAI's Responses API (`POST /responses`, `GET /responses/{id}`): pure request, usage
and stream-event functions for the responses surface.

The client's body goes to OpenAI as it is, apart from the model id and
`max_output_tokens` (the output limit the gateway reserved for). The answer's
usage (`input_tokens` with `input_tokens_details.cached_tokens`,
`output_tokens` with `output_tokens_details.reasoning_tokens`) is normalized
by `parse_usage`, as chat's is. A stream is named SSE events, `response.created`
to `response.completed` (or `response.incomplete`), the last the only one with
usage; the parser keeps each event's bytes for the client and parses only the
events it must: the text deltas (for the estimate of a stream cut short),
the events that carry the `response` object, and `error`.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ai_service.errors import InvalidRequestError, UpstreamError
from ai_service.providers.base import JsonObject, StreamEvent, UpstreamRequest, Usage
from ai_service.providers.openai_compat import OpenAICompatAdapter, parse_usage
from ai_service.sse import text_event

# ids the gateway puts in an upstream URL path: OpenAI's are `resp_` and hex
RESPONSE_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
# events that end a stream; the first two carry the final usage
FINAL = frozenset({"response.completed", "response.incomplete"})
FAILED = "response.failed"
# deltas of output other than the message text, counted for a stream cut short
OTHER_DELTAS = frozenset(
    {
        "response.function_call_arguments.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.refusal.delta",
        "response.custom_tool_call_input.delta",
    }
)
TEXT_DELTA = "response.output_text.delta"
# the events parsed whole: those that carry the `response` object, and errors
PARSED = frozenset(
    {"response.created", "response.in_progress", "response.queued", FAILED, "error", *FINAL}
)


def url(adapter: OpenAICompatAdapter, response_id: str | None = None) -> str:
    base = adapter.config.base_url.rstrip("/") + "/responses"
    return base if response_id is None else f"{base}/{response_id}"


def build_request(
    adapter: OpenAICompatAdapter, body: JsonObject, model: str, limit: int
) -> UpstreamRequest:
    """The upstream request for the client's body: its model and output limit set."""
    sent = {**body, "model": model, "max_output_tokens": limit}
    return UpstreamRequest(url(adapter), adapter.headers, orjson.dumps(sent))


def retrieve_request(adapter: OpenAICompatAdapter, response_id: str) -> UpstreamRequest:
    """`GET /responses/{id}`. Raises `InvalidRequestError` for an id that is not one."""
    if not RESPONSE_ID.match(response_id):
        raise InvalidRequestError(f"'{response_id[:80]}' is not a response id.")
    return UpstreamRequest(url(adapter, response_id), adapter.headers, b"", method="GET")


def parse_responses_usage(data: JsonObject, service_tier: object = None) -> Usage:
    """The usage of a `response` object, normalized as chat's (`parse_usage`)."""
    return parse_usage(
        {
            "prompt_tokens": data.get("input_tokens"),
            "prompt_tokens_details": data.get("input_tokens_details"),
            "completion_tokens": data.get("output_tokens"),
            "completion_tokens_details": data.get("output_tokens_details"),
        },
        service_tier,
    )


def response_usage(response: object) -> Usage | None:
    """The usage of a `response` object, if it has one."""
    if not isinstance(response, dict):
        return None
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return None
    return parse_responses_usage(usage, response.get("service_tier"))


def output_text(response: JsonObject) -> str:
    """All the output of a `response` object as text: messages, reasoning, tool calls."""
    texts: list[str] = []
    output = response.get("output")
    for item in output if isinstance(output, list) else ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            content = item.get("content")
            for part in content if isinstance(content, list) else ():
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    texts.append(text)
        else:
            texts.append(orjson.dumps(item).decode())
    return "".join(texts)


class ResponsesStreamParser:
    """Parses a Responses API event stream; each event keeps its bytes (`StreamEvent.frame`).

    The deltas are kept unparsed (`deltas`, with whether each is message text):
    their text is read once, by `output`, when the stream is settled.
    """

    __slots__ = ("_adapter", "_done", "deltas")

    def __init__(self, adapter: OpenAICompatAdapter) -> None:
        self._adapter = adapter
        self._done = False
        self.deltas: list[tuple[bool, str]] = []

    @property
    def done(self) -> bool:
        return self._done

    @property
    def stop_reason(self) -> str | None:
        """A Responses stream has no finish reason of chat's kind."""
        return None

    def feed(self, event: str | None, data: str, frame: bytes | None = None) -> list[StreamEvent]:
        if frame is None:
            frame = text_event(event, data)
        kind = event
        if kind == TEXT_DELTA or kind in OTHER_DELTAS:
            self.deltas.append((kind == TEXT_DELTA, data))
            return [StreamEvent(None, frame=frame)]
        if kind is not None and kind not in PARSED:
            return [StreamEvent(None, frame=frame)]  # item and part events: relayed as they are
        parsed = self._load(data)
        kind = kind or parsed.get("type")
        if kind == "error":
            self._done = True
            raise self._adapter.stream_error({"error": parsed})
        if kind == FAILED:
            self._done = True
            response = parsed.get("response")
            error = response.get("error") if isinstance(response, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            raise UpstreamError(f"{self._adapter.name}: {message or 'the response failed'}")
        if kind in FINAL:
            self._done = True
            usage = response_usage(parsed.get("response"))
            return [StreamEvent(parsed, usage=usage, frame=frame)]
        if kind == TEXT_DELTA or kind in OTHER_DELTAS:  # a stream without event names
            self.deltas.append((kind == TEXT_DELTA, data))
            return [StreamEvent(None, frame=frame)]
        return [StreamEvent(parsed if "response" in parsed else None, frame=frame)]

    def output(self) -> tuple[str, str]:
        """The message text delivered, and the other output (reasoning, tool-call
        arguments, refusals), from the deltas."""
        texts: list[str] = []
        other: list[str] = []
        for is_text, data in self.deltas:
            try:
                delta = orjson.loads(data).get("delta")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if isinstance(delta, str):
                (texts if is_text else other).append(delta)
        return "".join(texts), "".join(other)

    def _load(self, data: str) -> dict[str, Any]:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"The {self._adapter.name} provider sent malformed data.") from exc
        if not isinstance(parsed, dict):
            raise UpstreamError(f"The {self._adapter.name} provider sent malformed data.")
        return parsed
