"""Together's quirks: pure transforms, then the official SDK through a gateway to FakeTogether."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import orjson
import pytest

from ai_service.providers.base import ChatRequest, ProviderConfig
from ai_service.providers.openai_compat import build_body
from ai_service.providers.together import QUIRKS, TogetherAdapter
from tests.fakes import Answer, FakeTogether, ToolCall
from tests.support.gateway import Gateway

KEY = "sk-together-upstream-0123456789"
MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
HELLO = [{"role": "user", "content": "Say hello"}]
CONFIG = ProviderConfig("llama", "http://t.test/v1", KEY, "TOGETHER_API_KEY")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def body_for(stream: bool = False, **fields: Any) -> dict[str, Any]:
    req = ChatRequest({"model": MODEL, "messages": HELLO, **fields}, MODEL, stream, 100)
    return build_body(req, QUIRKS)


def create(client: openai.OpenAI, **fields: Any) -> Any:
    """`chat.completions.create` with plain dicts (the SDK's TypedDicts are not the point here)."""
    return client.chat.completions.create(**fields)


# ---- pure transforms ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"logprobs": True, "top_logprobs": 3}, 3),
        ({"logprobs": True, "top_logprobs": 0}, 1),
        ({"logprobs": True}, 1),
        ({"logprobs": 5}, 5),
        ({"logprobs": False, "top_logprobs": 3}, None),
        ({"top_logprobs": 3}, None),
    ],
)
def test_logprobs_is_the_number_of_top_tokens(fields: dict[str, Any], expected: int | None) -> None:
    body = body_for(**fields)
    assert body.get("logprobs") == expected
    assert "top_logprobs" not in body


def test_stop_string_becomes_a_list_and_developer_becomes_system() -> None:
    messages = [{"role": "developer", "content": "Be brief."}, *HELLO]
    body = body_for(stop="END", messages=messages)
    assert body["stop"] == ["END"]
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body_for(stop=["a", "b"])["stop"] == ["a", "b"]


@pytest.mark.parametrize(
    ("effort", "expected"),
    [
        ("minimal", "low"),
        ("low", "low"),
        ("medium", "medium"),
        ("high", "high"),
        ("xhigh", "high"),
        ("max", "high"),
    ],
)
def test_reasoning_effort_values(effort: str, expected: str) -> None:
    assert body_for(reasoning_effort=effort)["reasoning_effort"] == expected


def test_reasoning_effort_none_switches_reasoning_off() -> None:
    body = body_for(reasoning_effort="none")
    assert "reasoning_effort" not in body
    assert body["reasoning"] == {"enabled": False}
    explicit = body_for(reasoning_effort="none", reasoning={"enabled": True})
    assert explicit["reasoning"] == {"enabled": True}


def test_stream_options_are_not_sent() -> None:
    body = body_for(stream=True, stream_options={"include_usage": True})
    assert "stream_options" not in body
    assert body["stream"] is True


def test_reasoning_and_eos_are_openai_shaped() -> None:
    adapter = TogetherAdapter(CONFIG)
    req = ChatRequest({"model": MODEL, "messages": HELLO}, MODEL, True, 10)
    answer = {
        "choices": [{"message": {"content": "4", "reasoning": "2+2"}, "finish_reason": "eos"}]
    }
    choice = adapter.parse_response(answer, req).completion["choices"][0]
    assert choice == {
        "message": {"content": "4", "reasoning_content": "2+2"},
        "finish_reason": "stop",
    }
    parser = adapter.stream_parser(req)
    chunk = {"choices": [{"index": 0, "delta": {"reasoning": "hm"}, "finish_reason": "eos"}]}
    (event,) = parser.feed(None, orjson.dumps(chunk).decode())
    assert event.chunk == {
        "choices": [{"index": 0, "delta": {"reasoning_content": "hm"}, "finish_reason": "stop"}]
    }
    assert event.generated == 2


# ---- through the gateway ----------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTogether]:
    with FakeTogether(api_key=KEY) as server:
        yield server


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], fake: FakeTogether) -> Gateway:
    fake.reset()
    return gateway_factory(together_api_key=KEY, together_base_url=fake.base_url)


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    key = gateway.create_user("alice", "10")
    return openai.OpenAI(base_url=gateway.url + "/ai/llama", api_key=key, max_retries=0)


def test_openai_request_reaches_together_in_its_own_shape(
    client: openai.OpenAI, fake: FakeTogether
) -> None:
    fake.enqueue(Answer(finish_reason="eos"))
    answer = create(
        client,
        model=MODEL,
        messages=[{"role": "developer", "content": "Be brief."}, *HELLO],
        logprobs=True,
        top_logprobs=2,
        stop="END",
        seed=3,
        max_completion_tokens=40,
    )
    assert fake.last_request.body == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."}, *HELLO],
        "logprobs": 2,
        "stop": ["END"],
        "seed": 3,
        "max_tokens": 40,
    }
    assert answer.model == MODEL
    assert answer.choices[0].message.content == "Hello from together!"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (10, 3)


def test_stream_usage_comes_from_the_last_chunk(
    client: openai.OpenAI, fake: FakeTogether, gateway: Gateway
) -> None:
    chunks = list(
        create(
            client, model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "stream_options" not in fake.last_request.body
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from together!"
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 3)
    assert chunks[-2].choices[0].finish_reason == "stop"
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert (row.prompt_tokens, row.completion_tokens, row.usage_estimated) == (5, 3, False)


def test_stream_without_include_usage_has_no_usage_but_records_it(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    chunks = list(create(client, model=MODEL, messages=HELLO, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert (row.status, row.prompt_tokens, row.completion_tokens) == ("ok", 5, 3)
    assert not row.usage_estimated


def test_streamed_tool_call_fragments_assemble(client: openai.OpenAI, fake: FakeTogether) -> None:
    arguments = '{"city": "Paris", "unit": "celsius"}'
    fake.enqueue(Answer(tool_calls=(ToolCall("get_weather", arguments, id="call_t1"),)))
    stream = create(client, model=MODEL, messages=HELLO, tools=[WEATHER], stream=True)
    ids, names, args, finish = "", "", "", None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                assert call.index == 0
                ids += call.id or ""
                names += call.function.name or ""
                args += call.function.arguments or ""
    assert (ids, names, args, finish) == ("call_t1", "get_weather", arguments, "tool_calls")
