"""The shared OpenAI-compatible adapter: body building, answer normalization, usage, errors."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from ai_service.errors import (
    PayloadTooLargeError,
    RateLimitError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ai_service.providers.base import ChatRequest, ProviderConfig, StreamEvent, Usage
from ai_service.providers.errors import (
    MAX_MESSAGE_CHARS,
    ErrorDetail,
    map_status,
    parse_error_body,
    retry_after,
)
from ai_service.providers.openai_compat import (
    OpenAICompatAdapter,
    Quirks,
    build_body,
    normalize_message,
    parse_usage,
)

KEY = "sk-upstream-secret-0123456789"
USER = {"role": "user", "content": "Hi"}


def request(stream: bool = False, **fields: Any) -> ChatRequest:
    body = {"model": "asked", "messages": [USER], **fields}
    return ChatRequest(body=body, model="resolved", stream=stream, max_output_tokens=321)


def adapter(quirks: Quirks | None = None) -> OpenAICompatAdapter:
    config = ProviderConfig("acme", "http://upstream.test/v1/", KEY, "ACME_API_KEY")
    return OpenAICompatAdapter(config, quirks)


def feed(parser: Any, *chunks: dict[str, Any]) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(None, orjson.dumps(chunk).decode()))
    return events


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m"} | {
        "choices": [choice],
        **extra,
    }


# ---- request -------------------------------------------------------------------


def test_request_goes_to_chat_completions_with_bearer_key() -> None:
    up = adapter().build_request(request())
    assert up.url == "http://upstream.test/v1/chat/completions"
    assert up.headers["Authorization"] == f"Bearer {KEY}"
    assert orjson.loads(up.body) == {"model": "resolved", "messages": [USER], "max_tokens": 321}


def test_client_limits_are_replaced_by_the_reserved_limit_in_the_limit_field() -> None:
    req = request(max_tokens=5, max_completion_tokens=9)
    body = build_body(req, Quirks(limit_field="max_completion_tokens"))
    assert body["max_completion_tokens"] == 321
    assert "max_tokens" not in body


def test_stream_asks_for_usage_and_keeps_other_stream_options() -> None:
    req = request(stream=True, stream_options={"include_usage": False, "x": 1})
    body = build_body(req, Quirks())
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True, "x": 1}


def test_stream_options_are_dropped_where_the_provider_rejects_them() -> None:
    req = request(stream=True, stream_options={"include_usage": True})
    assert "stream_options" not in build_body(req, Quirks(stream_usage_option=False))


def test_non_stream_request_sends_neither_stream_nor_stream_options() -> None:
    body = build_body(request(stream=False, stream_options={"include_usage": True}), Quirks())
    assert "stream" not in body
    assert "stream_options" not in body


def test_renamed_field_moves_and_the_native_spelling_wins() -> None:
    quirks = Quirks(renamed_fields={"seed": "random_seed"})
    assert build_body(request(seed=4), quirks)["random_seed"] == 4
    both = build_body(request(seed=4, random_seed=5), quirks)
    assert both["random_seed"] == 5
    assert "seed" not in both


def test_tool_choice_and_reasoning_effort_values_are_respelled() -> None:
    quirks = Quirks(tool_choices={"required": "any"}, reasoning_efforts={"low": "high", "x": None})
    body = build_body(request(tool_choice="required", reasoning_effort="low"), quirks)
    assert (body["tool_choice"], body["reasoning_effort"]) == ("any", "high")
    assert "reasoning_effort" not in build_body(request(reasoning_effort="x"), quirks)
    named = {"type": "function", "function": {"name": "f"}}
    assert build_body(request(tool_choice=named), quirks)["tool_choice"] == named


def test_developer_role_becomes_system_and_message_fields_are_filtered() -> None:
    messages = [
        {"role": "developer", "content": "Be brief", "name": "ops"},
        {"role": "assistant", "content": "x", "refusal": None, "tool_calls": []},
        "not a message",
    ]
    quirks = Quirks(
        developer_role=False,
        message_fields={
            "system": frozenset({"role", "content"}),
            "assistant": frozenset({"role", "content", "tool_calls"}),
        },
    )
    body = build_body(request(messages=messages), quirks)
    assert body["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "assistant", "content": "x", "tool_calls": []},
        "not a message",
    ]


def test_dropped_and_accepted_fields() -> None:
    req = request(user="u1", logit_bias={"1": 2}, temperature=0.2)
    assert "user" not in build_body(req, Quirks(dropped_fields=frozenset({"user"})))
    accepted = frozenset({"model", "messages", "max_tokens", "temperature"})
    body = build_body(req, Quirks(accepted_fields=accepted))
    assert set(body) == accepted


def test_the_clients_body_is_never_changed() -> None:
    req = request(
        stream=True,
        seed=1,
        messages=[{"role": "developer", "content": "x", "name": "n"}],
        stream_options={"include_usage": False},
    )
    before = copy.deepcopy(req.body)
    quirks = Quirks(
        developer_role=False,
        renamed_fields={"seed": "random_seed"},
        message_fields={"system": frozenset({"role", "content"})},
    )
    build_body(req, quirks)
    assert req.body == before


def test_rewrite_hook_runs_last_on_the_copy() -> None:
    seen: list[dict[str, Any]] = []

    def hook(body: dict[str, Any], req: ChatRequest) -> None:
        seen.append(dict(body))
        body["extra"] = req.model

    body = build_body(request(seed=1), Quirks(renamed_fields={"seed": "s"}, rewrite=hook))
    assert seen[0]["s"] == 1
    assert body["extra"] == "resolved"


# ---- usage ---------------------------------------------------------------------


def test_openai_usage_with_cached_and_reasoning_details() -> None:
    usage = parse_usage(
        {
            "prompt_tokens": 100,
            "completion_tokens": 30,
            "total_tokens": 130,
            "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 12},
        }
    )
    assert usage == Usage(
        input_tokens=36, cache_read_tokens=64, output_tokens=30, reasoning_tokens=12
    )
    assert usage.to_openai()["prompt_tokens"] == 100


def test_deepseek_cache_hit_tokens_are_cached_prompt_tokens() -> None:
    usage = parse_usage(
        {
            "prompt_tokens": 50,
            "completion_tokens": 5,
            "prompt_cache_hit_tokens": 40,
            "prompt_cache_miss_tokens": 10,
        }
    )
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (10, 40, 5)


def test_usage_without_prompt_tokens_counts_cache_hits_and_misses() -> None:
    usage = parse_usage({"prompt_cache_hit_tokens": 3, "prompt_cache_miss_tokens": 4})
    assert usage.prompt_tokens == 7


def test_malformed_usage_numbers_count_as_zero() -> None:
    usage = parse_usage({"prompt_tokens": "9", "completion_tokens": True, "total_tokens": None})
    assert usage == Usage()


def test_cached_tokens_never_exceed_the_prompt() -> None:
    usage = parse_usage({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}})
    assert (usage.input_tokens, usage.cache_read_tokens) == (0, 5)


# ---- answers -------------------------------------------------------------------


def test_normalize_message_renames_reasoning_and_flattens_content_chunks() -> None:
    message = {
        "role": "assistant",
        "reasoning": "ignored",
        "content": [
            {"type": "thinking", "thinking": [{"type": "text", "text": "Hmm, "}, {"x": 1}]},
            {"type": "thinking", "thinking": [{"type": "text", "text": "yes."}]},
            {"type": "text", "text": "Four"},
            {"type": "reference", "reference_ids": [1]},
            "junk",
        ],
    }
    normalize_message(message, Quirks(reasoning_field="reasoning"))
    assert message == {"role": "assistant", "reasoning_content": "ignored", "content": "Four"}
    plain = {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "T"}]}]}
    assert normalize_message(plain, Quirks()) == {"content": "", "reasoning_content": "T"}


def test_object_tool_arguments_become_json_text() -> None:
    message: dict[str, Any] = {
        "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}, "junk"]
    }
    normalize_message(message, Quirks())
    assert message["tool_calls"][0]["function"]["arguments"] == '{"a":1}'


def test_parse_response_normalizes_choices_and_reads_usage() -> None:
    data = {
        "choices": [
            {"index": 0, "message": {"content": "a", "reasoning": "r"}, "finish_reason": "eos"},
            "junk",
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    quirks = Quirks(reasoning_field="reasoning", finish_reasons={"eos": "stop"})
    result = adapter(quirks).parse_response(data, request())
    choice = result.completion["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"] == {"content": "a", "reasoning_content": "r"}
    assert result.usage == Usage(input_tokens=3, output_tokens=2)


def test_answer_without_choices_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="without choices"):
        adapter().parse_response({"object": "chat.completion"}, request())


def test_answer_without_usage_has_none() -> None:
    assert adapter().parse_response({"choices": []}, request()).usage is None


# ---- stream --------------------------------------------------------------------


def test_stream_text_deltas_and_done() -> None:
    parser = adapter().stream_parser(request(stream=True))
    events = feed(parser, chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}))
    assert [e.text for e in events] == ["", "Hi"]
    assert events[1].generated == 2
    assert not parser.done
    assert parser.feed(None, "[DONE]") == []
    assert parser.done


def test_separate_usage_chunk_is_usage_only() -> None:
    parser = adapter().stream_parser(request(stream=True))
    usage = {"prompt_tokens": 4, "completion_tokens": 2}
    (event,) = feed(parser, {"id": "c1", "choices": [], "usage": usage})
    assert event.usage_only
    assert event.usage == Usage(input_tokens=4, output_tokens=2)


def test_usage_on_a_finish_chunk_is_split_into_its_own_chunk() -> None:
    parser = adapter().stream_parser(request(stream=True))
    usage = {"prompt_tokens": 4, "completion_tokens": 2, "prompt_cache_hit_tokens": 1}
    last = chunk({"content": "!"}, "stop", usage=usage, system_fingerprint="fp")
    finish, tail = feed(parser, last)
    assert "usage" not in finish.chunk  # type: ignore[operator]
    assert (finish.text, finish.usage, finish.usage_only) == ("!", None, False)
    assert tail.chunk == {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "m",
        "system_fingerprint": "fp",
        "choices": [],
        "usage": usage,
    }
    assert tail.usage_only
    assert tail.usage == Usage(input_tokens=3, cache_read_tokens=1, output_tokens=2)


def test_null_usage_on_ordinary_chunks_is_not_usage() -> None:
    parser = adapter().stream_parser(request(stream=True))
    (event,) = feed(parser, chunk({"content": "a"}, usage=None))
    assert event.usage is None
    assert not event.usage_only


def test_stream_deltas_are_normalized_and_counted() -> None:
    quirks = Quirks(reasoning_field="reasoning", finish_reasons={"eos": "stop"})
    parser = adapter(quirks).stream_parser(request(stream=True))
    events = feed(parser, chunk({"reasoning": "think"}), chunk({"content": "ok"}, "eos"))
    assert events[0].chunk["choices"][0]["delta"] == {"reasoning_content": "think"}  # type: ignore[index]
    assert events[0].generated == 5
    assert events[0].text == ""
    assert events[1].chunk["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]


def test_tool_call_deltas_count_names_and_arguments() -> None:
    parser = adapter().stream_parser(request(stream=True))
    start = {"index": 0, "id": "call_1", "function": {"name": "get", "arguments": ""}}
    more = {"index": 0, "function": {"arguments": '{"a":1}'}}
    events = feed(parser, chunk({"tool_calls": [start]}), chunk({"tool_calls": [more]}))
    assert [e.generated for e in events] == [3, 7]


def test_whole_tool_calls_without_index_are_numbered_per_choice() -> None:
    parser = adapter(Quirks(index_tool_calls=True)).stream_parser(request(stream=True))
    first = {"id": "aaaaaaaaa", "function": {"name": "f", "arguments": "{}"}, "index": 0}
    second = {"id": "bbbbbbbbb", "function": {"name": "g", "arguments": "{}"}, "index": 0}
    rest = {"function": {"arguments": "x"}}
    events = feed(
        parser,
        chunk({"tool_calls": [first]}),
        chunk({"tool_calls": [second, "junk"]}),
        chunk({"tool_calls": [rest]}),
    )
    indexes = [
        call["index"]
        for e in events
        for call in e.chunk["choices"][0]["delta"]["tool_calls"]  # type: ignore[index]
        if isinstance(call, dict)
    ]
    assert indexes == [0, 1, 1]


def test_malformed_stream_data_is_an_upstream_error() -> None:
    parser = adapter().stream_parser(request(stream=True))
    with pytest.raises(UpstreamError, match="malformed"):
        parser.feed(None, "{not json")
    with pytest.raises(UpstreamError, match="malformed"):
        parser.feed(None, "[1, 2]")


def test_error_event_in_stream_raises_without_the_key() -> None:
    parser = adapter().stream_parser(request(stream=True))
    error = {"error": {"message": f"overloaded, key {KEY}", "type": "server_error"}}
    with pytest.raises(UpstreamError) as info:
        feed(parser, error)
    assert info.value.message == "acme: overloaded, key [redacted]"
    with pytest.raises(UpstreamError, match="acme: stream failed"):
        parser.feed("error", "{}")


# ---- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "error": {
                    "message": "Bad",
                    "type": "invalid_request_error",
                    "param": "n",
                    "code": "x",
                }
            },
            ErrorDetail("Bad", "n", "x"),
        ),
        (
            {"error": {"error": "Old together shape", "error_type": "t"}},
            ErrorDetail("Old together shape"),
        ),
        ({"error": "plain"}, ErrorDetail("plain")),
        (
            {"object": "error", "message": "Tool call id was x", "type": "t", "code": 3280},
            ErrorDetail("Tool call id was x", None, "3280"),
        ),
        (
            {
                "object": "error",
                "message": {
                    "detail": [
                        {
                            "type": "extra_forbidden",
                            "loc": ["body", "stream_options", "include_usage"],
                            "msg": "Extra inputs are not permitted",
                            "input": True,
                        },
                        {"type": "missing", "loc": [], "msg": "Field required"},
                        "junk",
                    ]
                },
            },
            ErrorDetail(
                "stream_options.include_usage: Extra inputs are not permitted; Field required"
            ),
        ),
        (
            {"object": "error", "message": '{"detail":[{"loc":["body","n"],"msg":"bad n"}]}'},
            ErrorDetail("n: bad n"),
        ),
        ({"object": "error", "message": "{broken"}, ErrorDetail("{broken")),
        (
            {"detail": [{"loc": ["body", "seed"], "type": "int_parsing"}]},
            ErrorDetail("seed: int_parsing"),
        ),
        ({"detail": "Not Found"}, ErrorDetail("Not Found")),
        ({"message": "Unauthorized", "request_id": "r"}, ErrorDetail("Unauthorized")),
        ({"message": ["a"]}, ErrorDetail(None)),
        ([1, 2], ErrorDetail()),
    ],
)
def test_error_body_shapes(body: object, expected: ErrorDetail) -> None:
    assert parse_error_body(orjson.dumps(body)) == expected


def test_non_json_error_body_has_no_detail() -> None:
    assert parse_error_body(b"<html>502</html>") == ErrorDetail()


def test_client_4xx_passes_status_message_param_and_code() -> None:
    error = adapter().map_error(
        400,
        orjson.dumps({"error": {"message": "Bad n", "param": "n", "code": "invalid_value"}}),
        {},
    )
    assert isinstance(error, UpstreamStatusError)
    assert (error.status, error.message, error.param, error.error_code) == (
        400,
        "acme: Bad n",
        "n",
        "invalid_value",
    )


def test_422_validation_body_is_passed_as_a_readable_message() -> None:
    body = {"detail": [{"loc": ["body", "logit_bias"], "msg": "Extra inputs are not permitted"}]}
    error = adapter().map_error(422, orjson.dumps(body), {})
    assert error.status == 422
    assert error.message == "acme: logit_bias: Extra inputs are not permitted"


@pytest.mark.parametrize("status", [401, 402, 403])
def test_credentials_and_provider_balance_are_the_operators_problem(status: int) -> None:
    body = orjson.dumps({"error": {"message": f"Your api key: {KEY} is invalid"}})
    error = adapter().map_error(status, body, {})
    assert type(error) is UpstreamError
    assert error.status == 502
    assert KEY not in error.message
    assert "operator" in error.message


def test_key_echoed_in_a_4xx_message_is_redacted() -> None:
    body = orjson.dumps({"error": {"message": f"bad request for {KEY}"}})
    assert adapter().map_error(404, body, {}).message == "acme: bad request for [redacted]"


def test_status_mapping_for_server_side_failures() -> None:
    none = ErrorDetail("secret upstream details")
    limited = map_status("acme", 429, none, {"retry-after": "3"})
    assert isinstance(limited, RateLimitError)
    assert (limited.retry_after, limited.retryable) == (3.0, True)
    assert isinstance(map_status("acme", 413, none, {}), PayloadTooLargeError)
    assert isinstance(map_status("acme", 504, none, {}), UpstreamTimeoutError)
    unavailable = map_status("acme", 503, none, {"retry-after-ms": "1500"})
    assert isinstance(unavailable, UpstreamUnavailableError)
    assert unavailable.retry_after == 1.5
    failed = map_status("acme", 500, none, {})
    assert (failed.status, failed.retryable) == (502, True)
    assert "secret" not in failed.message
    assert not map_status("acme", 501, none, {}).retryable
    assert map_status("acme", 418, ErrorDetail(), {}).message.endswith("refused the request")


def test_a_key_cut_by_the_message_limit_is_still_redacted() -> None:
    message = "x" * (MAX_MESSAGE_CHARS - 5) + KEY
    error = map_status("acme", 400, ErrorDetail(message), {}, api_key=KEY)
    assert KEY[:5] not in error.message


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"RETRY-AFTER": "4"}, 4.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"retry-after": "inf"}, None),
        ({}, None),
    ],
)
def test_retry_after_in_seconds_milliseconds_or_a_date(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert retry_after(headers) == seconds
    for status in (429, 503, 529):
        assert map_status("acme", status, ErrorDetail(), headers).retry_after == seconds
