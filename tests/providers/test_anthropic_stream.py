"""Anthropic SSE events -> OpenAI chat.completion.chunk events."""

from __future__ import annotations

import json
from dataclasses import asdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from openai.types.chat import ChatCompletionChunk

from ai_service.errors import (
    RateLimitError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamUnavailableError,
)
from ai_service.providers.anthropic.response import from_anthropic_response
from ai_service.providers.anthropic.stream import AnthropicStreamParser
from ai_service.providers.base import StreamEvent, StreamParser, Usage

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
MODEL = "claude-sonnet-4-5"
CREATED = 1767225600


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event, data) pairs of an SSE text, as the transport layer hands them over."""
    events = []
    for frame in text.strip().split("\n\n"):
        name, data = None, []
        for line in frame.splitlines():
            field, _, value = line.partition(":")
            if field == "event":
                name = value.strip()
            elif field == "data":
                data.append(value[1:] if value.startswith(" ") else value)
        events.append((name, "\n".join(data)))
    return events


def parser() -> AnthropicStreamParser:
    return AnthropicStreamParser(model=MODEL, created=CREATED)


def feed_all(p: AnthropicStreamParser, events: list[tuple[str | None, str]]) -> list[StreamEvent]:
    out: list[StreamEvent] = []
    for name, data in events:
        out.extend(p.feed(name, data))
    return out


def feed(p: AnthropicStreamParser, payload: dict[str, Any]) -> list[StreamEvent]:
    return p.feed(payload["type"], json.dumps(payload))


def as_json(events: list[StreamEvent]) -> list[dict[str, Any]]:
    """The events as the golden file holds them (JSON: tuples become lists)."""
    loaded: list[dict[str, Any]] = json.loads(json.dumps(_events(events)))
    return loaded


def _events(events: list[StreamEvent]) -> list[dict[str, Any]]:
    return [
        {
            "chunk": e.chunk,
            "text": e.text,
            "generated": e.generated,
            "usage": None if e.usage is None else asdict(e.usage),
            "usage_only": e.usage_only,
            "early_usage": None if e.early_usage is None else asdict(e.early_usage),
        }
        for e in events
    ]


def chunks(events: list[StreamEvent]) -> list[dict[str, Any]]:
    return [e.chunk for e in events if e.chunk is not None]


def tool_arguments(events: list[StreamEvent]) -> dict[int, str]:
    """Each tool call's streamed arguments, concatenated, by tool-call index."""
    out: dict[int, str] = {}
    for chunk in chunks(events):
        for choice in chunk["choices"]:
            for call in choice["delta"].get("tool_calls", []):
                fragment = call.get("function", {}).get("arguments", "")
                out[call["index"]] = out.get(call["index"], "") + fragment
    return out


START: dict[str, Any] = {
    "type": "message_start",
    "message": {
        "id": "msg_9",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-x",
        "stop_reason": None,
        "usage": {"input_tokens": 30, "output_tokens": 1},
    },
}
STOP: dict[str, Any] = {"type": "message_stop"}


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": body}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str | None, usage: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": usage}


# -- golden fixture ------------------------------------------------------------------


def test_golden_stream_translation() -> None:
    events = feed_all(parser(), sse_events((FIXTURES / "stream_text_tool.sse").read_text()))
    assert as_json(events) == load("stream_text_tool.events.json")


def test_every_chunk_is_accepted_by_the_openai_sdk() -> None:
    events = feed_all(parser(), sse_events((FIXTURES / "stream_text_tool.sse").read_text()))
    for chunk in chunks(events):
        ChatCompletionChunk.model_validate(chunk)


def test_streamed_answer_equals_the_non_streamed_answer() -> None:
    events = feed_all(parser(), sse_events((FIXTURES / "stream_text_tool.sse").read_text()))
    completion = from_anthropic_response(
        load("response_text_tool.anthropic.json"), model=MODEL, created=CREATED
    ).completion
    message = completion["choices"][0]["message"]
    assert tool_arguments(events) == {
        0: message["tool_calls"][0]["function"]["arguments"],
    }
    assert "".join(e.text for e in events) == message["content"]
    assert events[-1].usage is not None
    assert events[-1].chunk is not None
    assert events[-1].chunk["usage"] == completion["usage"]


# -- the parser's contract --------------------------------------------------------------


def test_parser_satisfies_the_stream_parser_protocol() -> None:
    p: StreamParser = parser()
    assert p.done is False


def test_done_is_set_by_message_stop_and_later_events_are_ignored() -> None:
    p = parser()
    feed(p, START)
    assert not p.done
    assert feed(p, STOP)[0].usage_only
    assert p.done
    assert feed(p, delta(0, {"type": "text_delta", "text": "late"})) == []


def test_message_start_emits_the_role_chunk() -> None:
    [event] = feed(parser(), START)
    assert event.chunk == {
        "id": "msg_9",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        ],
    }
    assert (event.text, event.generated, event.usage) == ("", 0, None)


def test_ping_yields_an_event_without_chunk() -> None:
    p = parser()
    feed(p, START)
    assert p.feed("ping", '{"type": "ping"}') == [StreamEvent(chunk=None)]


def test_event_name_is_used_when_data_has_no_type() -> None:
    assert parser().feed("ping", "{}") == [StreamEvent(chunk=None)]


def test_unknown_events_and_deltas_are_ignored() -> None:
    p = parser()
    feed(p, START)
    assert p.feed("future_event", '{"type": "future_event"}') == []
    assert feed(p, block_start(0, {"type": "server_tool_use", "id": "s", "name": "web"})) == []
    assert feed(p, delta(0, {"type": "signature_delta", "signature": "abc"})) == []
    assert feed(p, delta(0, {"type": "citations_delta", "citation": {}})) == []
    assert feed(p, block_stop(0)) == []


def test_text_delta_sets_text_and_generated() -> None:
    p = parser()
    feed(p, START)
    assert feed(p, block_start(0, {"type": "text", "text": ""})) == []
    [event] = feed(p, delta(0, {"type": "text_delta", "text": "Grüße"}))
    assert event.chunk is not None
    assert event.chunk["choices"][0]["delta"] == {"content": "Grüße"}
    assert (event.text, event.generated) == ("Grüße", 5)


def test_thinking_streams_as_reasoning_content() -> None:
    p = parser()
    feed(p, START)
    assert feed(p, block_start(0, {"type": "thinking", "thinking": ""})) == []
    [event] = feed(p, delta(0, {"type": "thinking_delta", "thinking": "Hmm, 6*7"}))
    assert event.chunk is not None
    assert event.chunk["choices"][0]["delta"] == {"reasoning_content": "Hmm, 6*7"}
    assert (event.text, event.generated) == ("", 8)
    assert feed(p, delta(0, {"type": "signature_delta", "signature": "EqQB"})) == []


def test_tool_calls_are_indexed_over_tool_use_blocks_only() -> None:
    p = parser()
    events = feed(p, START)
    events += feed(p, block_start(0, {"type": "text", "text": ""}))
    events += feed(p, delta(0, {"type": "text_delta", "text": "Two lookups."}))
    events += feed(p, block_stop(0))
    for block, (call_id, city) in enumerate([("toolu_a", "Paris"), ("toolu_b", "Rome")], start=1):
        events += feed(
            p, block_start(block, {"type": "tool_use", "id": call_id, "name": "w", "input": {}})
        )
        events += feed(p, delta(block, {"type": "input_json_delta", "partial_json": '{"city": '}))
        events += feed(p, delta(block, {"type": "input_json_delta", "partial_json": f'"{city}"}}'}))
        events += feed(p, block_stop(block))
    starts = [
        call
        for chunk in chunks(events)
        for call in chunk["choices"][0]["delta"].get("tool_calls", [])
        if "id" in call
    ]
    assert starts == [
        {
            "index": 0,
            "id": "toolu_a",
            "type": "function",
            "function": {"name": "w", "arguments": ""},
        },
        {
            "index": 1,
            "id": "toolu_b",
            "type": "function",
            "function": {"name": "w", "arguments": ""},
        },
    ]
    assert tool_arguments(events) == {0: '{"city": "Paris"}', 1: '{"city": "Rome"}'}
    assert [
        e.generated for e in events if e.chunk and "tool_calls" in e.chunk["choices"][0]["delta"]
    ] == [0, 9, 8, 0, 9, 7]


def test_tool_without_argument_fragments_gets_empty_object_like_non_streamed() -> None:
    p = parser()
    feed(p, START)
    events = feed(p, block_start(0, {"type": "tool_use", "id": "t", "name": "now", "input": {}}))
    events += feed(p, delta(0, {"type": "input_json_delta", "partial_json": ""}))
    events += feed(p, block_stop(0))
    non_streamed = from_anthropic_response(
        {
            "type": "message",
            "id": "m",
            "content": [{"type": "tool_use", "id": "t", "name": "now", "input": {}}],
        },
        model=MODEL,
        created=CREATED,
    ).completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert tool_arguments(events) == {0: non_streamed} == {0: "{}"}


def test_message_delta_emits_finish_reason_and_records_cumulative_usage() -> None:
    p = parser()
    feed(
        p,
        {
            **START,
            "message": {
                **START["message"],
                "usage": {
                    "input_tokens": 30,
                    "cache_read_input_tokens": 7,
                    "cache_creation_input_tokens": 3,
                    "output_tokens": 1,
                },
            },
        },
    )
    feed(p, message_delta(None, {"output_tokens": 4}))
    [event] = feed(p, message_delta("max_tokens", {"output_tokens": 12}))
    assert event.chunk is not None
    assert event.chunk["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    # message_delta's counts are cumulative, the final ones: a stream closed after it
    # is charged them exactly
    assert event.usage == Usage(
        input_tokens=30, cache_read_tokens=7, cache_write_tokens=3, output_tokens=12
    )
    [final] = feed(p, STOP)
    assert final.usage == Usage(
        input_tokens=30, cache_read_tokens=7, cache_write_tokens=3, output_tokens=12
    )
    assert final.usage_only
    assert final.chunk == {
        "id": "msg_9",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [],
        "usage": {
            "prompt_tokens": 40,
            "completion_tokens": 12,
            "total_tokens": 52,
            "prompt_tokens_details": {"cached_tokens": 7, "cache_creation_tokens": 3},
        },
    }


def test_message_delta_input_usage_and_thinking_tokens_override_the_start() -> None:
    p = parser()
    feed(p, START)
    feed(
        p,
        message_delta(
            "end_turn",
            {
                "input_tokens": 31,
                "output_tokens": 50,
                "output_tokens_details": {"thinking_tokens": 40},
            },
        ),
    )
    assert p.usage == Usage(input_tokens=31, output_tokens=50, reasoning_tokens=40)


def test_stream_without_message_delta_reports_start_usage() -> None:
    p = parser()
    feed(p, START)
    [final] = feed(p, STOP)
    assert final.usage == Usage(input_tokens=30, output_tokens=1)


@pytest.mark.parametrize(
    ("error_type", "cls", "status", "retryable"),
    [
        ("overloaded_error", UpstreamUnavailableError, 503, True),
        ("api_error", UpstreamError, 502, True),
        ("rate_limit_error", RateLimitError, 429, True),
        ("invalid_request_error", UpstreamStatusError, 400, False),
        ("mystery_error", UpstreamError, 502, True),
    ],
)
def test_error_event_raises_the_mapped_error(
    error_type: str, cls: type[UpstreamError], status: int, retryable: bool
) -> None:
    p = parser()
    feed(p, START)
    payload = {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}
    with pytest.raises(cls) as info:
        p.feed("error", json.dumps(payload))
    assert type(info.value) is cls
    assert info.value.status == status
    assert info.value.retryable is retryable


@pytest.mark.parametrize("data", ["not json", "[1, 2]", ""])
def test_malformed_event_data_is_an_upstream_error(data: str) -> None:
    with pytest.raises(UpstreamError) as info:
        parser().feed("content_block_delta", data)
    assert info.value.status == 502


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None)
@given(
    tool_input=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_any_fragmentation_streams_the_non_streamed_arguments(
    tool_input: dict[str, Any], cuts: list[int]
) -> None:
    answer = {
        "type": "message",
        "id": "msg_h",
        "content": [{"type": "tool_use", "id": "toolu_h", "name": "f", "input": tool_input}],
        "stop_reason": "tool_use",
    }
    expected = from_anthropic_response(answer, model=MODEL, created=CREATED).completion
    arguments = expected["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    # Anthropic streams the same serialization, cut at arbitrary points.
    points = sorted({min(c, len(arguments)) for c in cuts} | {0, len(arguments)})
    fragments = [arguments[a:b] for a, b in pairwise(points)]
    p = parser()
    events = feed(p, START)
    events += feed(
        p, block_start(0, {"type": "tool_use", "id": "toolu_h", "name": "f", "input": {}})
    )
    for fragment in fragments:
        events += feed(p, delta(0, {"type": "input_json_delta", "partial_json": fragment}))
    events += feed(p, block_stop(0))
    assert tool_arguments(events) == {0: arguments}
    assert sum(e.generated for e in events) == len(arguments)
