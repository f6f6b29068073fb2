"""A chat answer as a Messages answer: the `message` object and the stream's events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ai_service.errors import UpstreamError
from ai_service.providers.base import Usage
from ai_service.translate.message_answer import MessageStream, frames, message_object

MODEL = "gpt-5.4-mini"


def completion(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }


USAGE = Usage(input_tokens=10, cache_read_tokens=5, cache_write_tokens=2, output_tokens=7)


def test_an_answer_becomes_a_message_with_the_usage_charged() -> None:
    message = message_object(
        completion({"role": "assistant", "content": "Hi!", "reasoning_content": "Greet."}),
        "msg_1",
        MODEL,
        USAGE,
    )
    assert message == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            {"type": "thinking", "thinking": "Greet.", "signature": ""},
            {"type": "text", "text": "Hi!"},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 2,
            "cache_read_input_tokens": 5,
            "output_tokens": 7,
        },
    }


def test_tool_calls_become_tool_use_blocks_with_parsed_input() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"type": "function", "function": {"name": "g", "arguments": "not json"}},
        {"id": "call_3", "type": "function", "function": {"name": "h", "arguments": ""}},
    ]
    message = message_object(
        completion({"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"),
        "msg_abc",
        MODEL,
        USAGE,
    )
    assert message["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
        {"type": "tool_use", "id": "toolu_abc_1", "name": "g", "input": {}},
        {"type": "tool_use", "id": "call_3", "name": "h", "input": {}},
    ]
    assert message["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish", "called", "reason"),
    [
        ("stop", False, "end_turn"),
        ("stop", True, "tool_use"),  # a provider that says stop after calling tools
        ("length", False, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("content_filter", False, "refusal"),
        ("something_new", False, "end_turn"),
    ],
)
def test_stop_reasons(finish: str, called: bool, reason: str) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": "x"}
    if called:
        message["tool_calls"] = [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]
    assert (
        message_object(completion(message, finish), "msg_1", MODEL, USAGE)["stop_reason"] == reason
    )


def test_an_answer_without_a_message_is_an_upstream_error() -> None:
    for bad in ({"choices": []}, {"choices": [{"index": 0}]}, {}):
        with pytest.raises(UpstreamError):
            message_object(bad, "msg_1", MODEL, USAGE)


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def test_a_stream_of_reasoning_text_and_tool_calls_is_anthropic_s_event_sequence() -> None:
    stream = MessageStream("msg_1", MODEL)
    events = stream.opening(12)
    for piece in (
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing."}),
        chunk({"content": "Hello"}),
        chunk({"content": " there"}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_a", "function": {"name": "f", "arguments": ""}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}
                ]
            }
        ),
        chunk({}, "tool_calls"),
        {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 9}},
    ):
        events += stream.feed(piece)
    events += stream.closing(Usage(input_tokens=12, output_tokens=9))
    assert [e["type"] for e in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0]["message"]
    assert (start["id"], start["model"], start["content"], start["usage"]["input_tokens"]) == (
        "msg_1",
        MODEL,
        [],
        12,
    )
    blocks = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert blocks == [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "call_a", "name": "f", "input": {}},
        {"type": "tool_use", "id": "call_b", "name": "g", "input": {}},
    ]
    deltas = [(e["index"], e["delta"]) for e in events if e["type"] == "content_block_delta"]
    assert deltas == [
        (0, {"type": "thinking_delta", "thinking": "Think"}),
        (0, {"type": "thinking_delta", "thinking": "ing."}),
        (1, {"type": "text_delta", "text": "Hello"}),
        (1, {"type": "text_delta", "text": " there"}),
        (2, {"type": "input_json_delta", "partial_json": '{"a":'}),
        (2, {"type": "input_json_delta", "partial_json": " 1}"}),
        (3, {"type": "input_json_delta", "partial_json": "{}"}),
    ]
    stops = [e["index"] for e in events if e["type"] == "content_block_stop"]
    assert stops == [0, 1, 2, 3]
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2]["usage"]["output_tokens"] == 9


def test_a_stream_without_a_finish_reason_still_closes_its_block() -> None:
    stream = MessageStream("msg_1", MODEL)
    events = stream.feed(chunk({"content": "cut"}))
    events += stream.closing(Usage(output_tokens=1))
    assert [e["type"] for e in events] == [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-2]["delta"]["stop_reason"] == "end_turn"


def test_a_length_finish_is_max_tokens() -> None:
    stream = MessageStream("msg_1", MODEL)
    stream.feed(chunk({"content": "a"}, "length"))
    assert stream.closing(Usage())[-2]["delta"]["stop_reason"] == "max_tokens"


def test_frames_name_their_event() -> None:
    encoded = frames([{"type": "ping"}, {"type": "message_stop"}])
    assert encoded == (
        b'event: ping\ndata: {"type":"ping"}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert orjson.loads(encoded.split(b"\n")[1].removeprefix(b"data: ")) == {"type": "ping"}
