"""The Responses API's pure pieces: the request, the usage, the stream parser."""

from __future__ import annotations

import orjson
import pytest

from ai_service.errors import InvalidRequestError, UpstreamError
from ai_service.providers.base import ProviderConfig, Usage
from ai_service.providers.openai import OpenAIAdapter
from ai_service.providers.openai_responses import (
    ResponsesStreamParser,
    build_request,
    parse_responses_usage,
    retrieve_request,
)

ADAPTER = OpenAIAdapter(ProviderConfig("openai", "https://api.example/v1/", "sk-up", "K"))
USAGE = {
    "input_tokens": 1200,
    "input_tokens_details": {"cached_tokens": 1024},
    "output_tokens": 300,
    "output_tokens_details": {"reasoning_tokens": 256},
    "total_tokens": 1500,
}


def test_the_request_sets_only_the_model_and_the_limit() -> None:
    body = {"model": "gpt-4o", "input": "hi", "store": False, "max_output_tokens": 999}
    request = build_request(ADAPTER, body, "gpt-5.4-mini", 64)
    assert request.url == "https://api.example/v1/responses"
    assert request.headers["Authorization"] == "Bearer sk-up"
    assert orjson.loads(request.body) == {**body, "model": "gpt-5.4-mini", "max_output_tokens": 64}
    assert body["max_output_tokens"] == 999  # the client's body is not changed


def test_a_retrieval_takes_only_an_id() -> None:
    request = retrieve_request(ADAPTER, "resp_abc123")
    assert (request.method, request.url) == ("GET", "https://api.example/v1/responses/resp_abc123")
    with pytest.raises(InvalidRequestError):
        retrieve_request(ADAPTER, "../models")


def test_usage_counts_cached_and_reasoning_tokens() -> None:
    assert parse_responses_usage(USAGE, "flex") == Usage(
        input_tokens=176,
        cache_read_tokens=1024,
        output_tokens=300,
        reasoning_tokens=256,
        service_tier="flex",
    )


def test_events_keep_their_bytes_and_only_the_final_one_has_usage() -> None:
    parser = ResponsesStreamParser(ADAPTER)
    delta = '{"type":"response.output_text.delta","delta":"Hi","sequence_number":3}'
    (ev,) = parser.feed("response.output_text.delta", delta)
    assert (ev.chunk, ev.text, ev.frame) == (
        None,
        "",
        b"event: response.output_text.delta\ndata: " + delta.encode() + b"\n\n",
    )
    args = (
        '{"type":"response.function_call_arguments.delta","delta":"{\\"a\\"","sequence_number":4}'
    )
    (ev,) = parser.feed("response.function_call_arguments.delta", args)
    assert (ev.chunk, ev.text, ev.generated_text) == (None, "", "")
    (ev,) = parser.feed("response.output_item.done", '{"type":"response.output_item.done"}')
    assert (ev.chunk, ev.usage) == (None, None)
    assert not parser.done
    final = {"type": "response.completed", "response": {"usage": USAGE, "service_tier": "default"}}
    (ev,) = parser.feed(None, orjson.dumps(final).decode())  # a stream without event names
    assert ev.usage is not None and ev.usage.cache_read_tokens == 1024
    assert ev.frame is not None and ev.frame.startswith(b"data: {")
    assert parser.done
    # the deltas are read once, at the end: the text, and the other output
    assert parser.output() == ("Hi", '{"a"')


def test_an_event_read_whole_is_relayed_as_the_bytes_received() -> None:
    parser = ResponsesStreamParser(ADAPTER)
    received = b'event: response.output_text.delta\ndata: {"delta":"caf\\u00e9"}\n\n'
    (ev,) = parser.feed("response.output_text.delta", '{"delta":"caf\\u00e9"}', received)
    assert ev.frame is received
    assert parser.output() == ("caf\u00e9", "")


def test_deltas_that_are_not_json_add_no_text() -> None:
    parser = ResponsesStreamParser(ADAPTER)
    parser.feed("response.output_text.delta", '{"delta":"a"}')
    parser.feed("response.output_text.delta", "not json")
    parser.feed("response.output_text.delta", '{"delta":7}')
    parser.feed("response.refusal.delta", '{"delta":"no"}')
    assert parser.output() == ("a", "no")


def test_an_error_event_and_a_failed_response_fail_the_stream() -> None:
    with pytest.raises(UpstreamError, match="overloaded"):
        ResponsesStreamParser(ADAPTER).feed(
            "error", '{"type":"error","code":"server_error","message":"overloaded"}'
        )
    failed = {"type": "response.failed", "response": {"error": {"message": "it broke"}}}
    with pytest.raises(UpstreamError, match="it broke"):
        ResponsesStreamParser(ADAPTER).feed("response.failed", orjson.dumps(failed).decode())


def test_an_event_whose_data_spans_lines_is_relayed_with_a_data_line_for_each() -> None:
    parser = ResponsesStreamParser(ADAPTER)
    data = '{"type":"response.output_item.done",\n"output_index":0}'
    (ev,) = parser.feed("response.output_item.done", data)
    assert ev.frame == (
        b'event: response.output_item.done\ndata: {"type":"response.output_item.done",\n'
        b'data: "output_index":0}\n\n'
    )
