"""Mistral's quirks: pure transforms, then the official SDK through a gateway to FakeMistral."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import openai
import orjson
import pytest

from ai_service.providers.base import ChatRequest, ProviderConfig
from ai_service.providers.mistral import QUIRKS, MistralAdapter, map_tool_call_ids
from ai_service.providers.openai_compat import build_body
from tests.fakes import Answer, ErrorReply, FakeMistral, ToolCall
from tests.support.gateway import Gateway

KEY = "sk-mistral-upstream-0123456789"
MODEL = "mistral-small-latest"
MISTRAL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
HELLO = [{"role": "user", "content": "Say hello"}]


def body_for(stream: bool = False, **fields: Any) -> dict[str, Any]:
    req = ChatRequest({"model": MODEL, "messages": HELLO, **fields}, MODEL, stream, 100)
    return build_body(req, QUIRKS)


def create(client: openai.OpenAI, **fields: Any) -> Any:
    """`chat.completions.create` with plain dicts (the SDK's TypedDicts are not the point here)."""
    return client.chat.completions.create(**fields)


def tool_turn(call_id: str) -> list[dict[str, Any]]:
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": "18C"},
    ]


# ---- pure transforms ---------------------------------------------------------------


def test_openai_only_fields_are_dropped_and_seed_is_random_seed() -> None:
    body = body_for(
        stream=True,
        seed=7,
        user="u-1",
        logit_bias={"1": 2},
        logprobs=True,
        top_logprobs=2,
        store=True,
        service_tier="auto",
        stream_options={"include_usage": True},
        max_completion_tokens=9,
        safe_prompt=True,
    )
    assert body == {
        "model": MODEL,
        "messages": HELLO,
        "max_tokens": 100,
        "stream": True,
        "random_seed": 7,
        "safe_prompt": True,
    }


@pytest.mark.parametrize(
    ("effort", "expected"),
    [
        ("none", "none"),
        ("minimal", "none"),
        ("low", "high"),
        ("medium", "high"),
        ("xhigh", "high"),
        ("max", "high"),
    ],
)
def test_reasoning_effort_is_none_or_high(effort: str, expected: str) -> None:
    assert body_for(reasoning_effort=effort)["reasoning_effort"] == expected


def test_echoed_sdk_message_fields_are_dropped_per_role() -> None:
    messages = [
        {"role": "developer", "content": "Be brief.", "name": "ops"},
        {"role": "user", "content": "Hi", "name": "ann"},
        {"role": "assistant", "content": "Yo", "refusal": None, "annotations": [], "audio": None},
        {"role": "assistant", "content": "", "reasoning_content": "r", "prefix": True},
    ]
    assert body_for(messages=messages)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Yo"},
        {"role": "assistant", "content": "", "prefix": True},
    ]


def test_openai_tool_call_ids_are_mapped_consistently() -> None:
    messages = tool_turn("call_Xy12abCDef34GhIJ") + tool_turn("call_other") + tool_turn("abc123XYZ")
    out = map_tool_call_ids(messages)
    first, second = out[1]["tool_calls"][0]["id"], out[4]["tool_calls"][0]["id"]
    assert MISTRAL_ID.match(first)
    assert MISTRAL_ID.match(second)
    assert first != second
    assert out[2]["tool_call_id"] == first
    assert out[5]["tool_call_id"] == second
    assert out[7]["tool_calls"][0]["id"] == out[8]["tool_call_id"] == "abc123XYZ"
    assert messages[1]["tool_calls"][0]["id"] == "call_Xy12abCDef34GhIJ"  # input untouched
    assert map_tool_call_ids(messages) == out  # deterministic across requests


def test_valid_ids_are_kept_and_never_collide_with_mapped_ones() -> None:
    from ai_service.providers import mistral

    taken = mistral._derived_id("call_x", 0)
    messages = tool_turn(taken) + tool_turn("call_x")
    out = map_tool_call_ids(messages)
    assert out[1]["tool_calls"][0]["id"] == taken
    assert out[4]["tool_calls"][0]["id"] == mistral._derived_id("call_x", 1)
    assert map_tool_call_ids(HELLO) is HELLO


def test_ids_that_are_not_strings_are_left_alone() -> None:
    messages: list[Any] = [
        {"role": "assistant", "tool_calls": [{"id": None}, {"id": ["x"]}, "junk"]},
        {"role": "tool", "tool_call_id": None, "content": "?"},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
    ]
    out = map_tool_call_ids(messages)
    assert out[0] is messages[0]
    assert out[1] is messages[1]
    assert MISTRAL_ID.match(out[2]["tool_call_id"])


def test_tool_choice_required_is_any() -> None:
    assert body_for(tools=[WEATHER], tool_choice="required")["tool_choice"] == "any"


def test_model_length_finish_and_thinking_chunks_are_normalized() -> None:
    config = ProviderConfig("mistral", "http://m.test/v1", KEY, "MISTRAL_API_KEY")
    answer = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": [{"type": "text", "text": "Think."}]},
                        {"type": "text", "text": "Done."},
                    ],
                },
                "finish_reason": "model_length",
            }
        ]
    }
    req = ChatRequest({"model": MODEL, "messages": HELLO}, MODEL, False, 10)
    choice = MistralAdapter(config).parse_response(answer, req).completion["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Done.",
        "reasoning_content": "Think.",
    }


def test_422_error_body_becomes_a_readable_message() -> None:
    config = ProviderConfig("mistral", "http://m.test/v1", KEY, "MISTRAL_API_KEY")
    detail = {"type": "extra_forbidden", "loc": ["body", "user"], "msg": "Extra inputs"}
    body = {"object": "error", "message": {"detail": [detail]}, "type": "invalid_request_error"}
    error = MistralAdapter(config).map_error(422, orjson.dumps(body), {})
    assert (error.status, error.message) == (422, "mistral: user: Extra inputs")


# ---- through the gateway ----------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeMistral]:
    with FakeMistral(api_key=KEY) as server:
        yield server


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], fake: FakeMistral) -> Gateway:
    fake.reset()
    return gateway_factory(mistral_api_key=KEY, mistral_base_url=fake.base_url)


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    key = gateway.create_user("alice", "10")
    return openai.OpenAI(base_url=gateway.url + "/ai/mistral", api_key=key, max_retries=0)


def test_openai_request_reaches_mistral_in_its_own_shape(
    client: openai.OpenAI, fake: FakeMistral, gateway: Gateway
) -> None:
    answer = create(
        client,
        model=MODEL,
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        seed=7,
        user="u-1",
        logit_bias={"1": -100},
        max_completion_tokens=50,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        reasoning_effort="low",
    )
    assert fake.last_request.body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        "max_tokens": 50,
        "random_seed": 7,
        "tools": [WEATHER],
        "tool_choice": "any",
        "parallel_tool_calls": False,
        "reasoning_effort": "high",
    }
    assert answer.model == MODEL
    assert answer.choices[0].message.content == "Hello from mistral!"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (10, 3)


def test_stream_usage_comes_from_the_last_chunk_without_stream_options(
    client: openai.OpenAI, fake: FakeMistral, gateway: Gateway
) -> None:
    chunks = list(
        create(
            client, model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    body = fake.last_request.body
    assert body["stream"] is True
    assert "stream_options" not in body
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from mistral!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    with_usage = [c for c in chunks if c.usage is not None]
    assert with_usage == [chunks[-1]]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 3)


def test_stream_without_include_usage_still_records_the_real_usage(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    chunks = list(create(client, model=MODEL, messages=HELLO, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert (row.status, row.prompt_tokens, row.completion_tokens) == ("ok", 5, 3)
    assert not row.usage_estimated


def test_streamed_tool_calls_arrive_whole_with_an_index_each(
    client: openai.OpenAI, fake: FakeMistral
) -> None:
    fake.enqueue(
        Answer(tool_calls=(ToolCall("get_weather", '{"city":"Paris"}'), ToolCall("get_time")))
    )
    stream = create(
        client,
        model=MODEL,
        messages=HELLO,
        tools=[WEATHER],
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for c in stream:
        for choice in c.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                entry["name"] += (call.function and call.function.name) or ""
                entry["arguments"] += (call.function and call.function.arguments) or ""
    assert finish == "tool_calls"
    assert [(c["name"], c["arguments"]) for c in calls.values()] == [
        ("get_weather", '{"city":"Paris"}'),
        ("get_time", "{}"),
    ]
    assert all(MISTRAL_ID.match(c["id"]) for c in calls.values())


def test_tool_call_id_round_trip(client: openai.OpenAI, fake: FakeMistral) -> None:
    fake.enqueue(Answer(tool_calls=(ToolCall("get_weather", '{"city":"Paris"}'),)))
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = create(client, model=MODEL, messages=messages, tools=[WEATHER])
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert MISTRAL_ID.match(call.id)
    messages += [
        first.choices[0].message,
        {"role": "tool", "tool_call_id": call.id, "content": "18C"},
    ]
    second = create(client, model=MODEL, messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "Hello from mistral!"
    sent = fake.last_request.body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"] == call.id
    assert set(sent[1]) <= {"role", "content", "tool_calls", "prefix"}


def test_openai_style_tool_call_ids_are_accepted_by_mistral(
    client: openai.OpenAI, fake: FakeMistral
) -> None:
    answer = create(
        client,
        model=MODEL,
        messages=tool_turn("call_Xy12abCDef34GhIJ"),
        tools=[WEATHER],
    )
    assert answer.choices[0].message.content == "Hello from mistral!"
    sent = fake.last_request.body["messages"]
    mapped = sent[1]["tool_calls"][0]["id"]
    assert MISTRAL_ID.match(mapped)
    assert sent[2]["tool_call_id"] == mapped


def test_mistral_errors_reach_the_client_in_openai_shape(
    client: openai.OpenAI, fake: FakeMistral
) -> None:
    fake.enqueue(ErrorReply(400, "Tool call id was x but must be 9", code="3280"))
    with pytest.raises(openai.BadRequestError) as bad:
        create(client, model=MODEL, messages=HELLO)
    assert bad.value.body == {
        "message": "mistral: Tool call id was x but must be 9",
        "type": "invalid_request_error",
        "param": None,
        "code": "3280",
    }
    detail = {"type": "extra_forbidden", "loc": ["body", "stop"], "msg": "Extra inputs"}
    fake.enqueue(ErrorReply(422, body={"object": "error", "message": {"detail": [detail]}}))
    with pytest.raises(openai.UnprocessableEntityError) as invalid:
        create(client, model=MODEL, messages=HELLO)
    assert invalid.value.body == {
        "message": "mistral: stop: Extra inputs",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_rejected_upstream_key_is_a_502_for_the_operator(
    gateway_factory: Callable[..., Gateway], fake: FakeMistral
) -> None:
    gateway = gateway_factory(
        mistral_api_key="sk-wrong-key-0123456789", mistral_base_url=fake.base_url
    )
    key = gateway.create_user("bob", "10")
    client = openai.OpenAI(base_url=gateway.url + "/ai/mistral", api_key=key, max_retries=0)
    with pytest.raises(openai.InternalServerError) as error:
        create(client, model=MODEL, messages=HELLO)
    assert error.value.status_code == 502
    assert "operator" in error.value.message
