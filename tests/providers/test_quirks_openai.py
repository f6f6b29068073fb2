"""OpenAI's quirks: pure transforms, then the official SDK through a gateway to FakeOpenAI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from ai_service.providers.base import ChatRequest
from ai_service.providers.openai import QUIRKS, is_reasoning_model
from ai_service.providers.openai_compat import build_body
from tests.fakes import Answer, ErrorReply, FakeOpenAI, ToolCall, Usage
from tests.support.gateway import Gateway

KEY = "sk-openai-upstream-0123456789"
HELLO = [{"role": "user", "content": "Say hello"}]
SAMPLING: dict[str, Any] = {
    "temperature": 0.2,
    "top_p": 0.9,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.1,
    "logprobs": True,
    "top_logprobs": 2,
    "logit_bias": {"1": -100},
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def body_for(model: str, stream: bool = False, **fields: Any) -> dict[str, Any]:
    req = ChatRequest({"model": model, "messages": HELLO, **fields}, model, stream, 100)
    return build_body(req, QUIRKS)


def create(client: openai.OpenAI, **fields: Any) -> Any:
    """`chat.completions.create` with plain dicts (the SDK's TypedDicts are not the point here)."""
    return client.chat.completions.create(**fields)


# ---- pure transforms ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "reasoning"),
    [
        ("gpt-5.4-mini", True),
        ("gpt-5", True),
        ("o1", True),
        ("o3-mini", True),
        ("o4-mini-2025-04-16", True),
        ("gpt-5-chat-latest", False),
        ("gpt-5.3-chat-latest", False),
        ("gpt-4.1", False),
        ("gpt-4o", False),
    ],
)
def test_reasoning_models(model: str, reasoning: bool) -> None:
    assert is_reasoning_model(model) is reasoning


def test_max_completion_tokens_is_always_sent() -> None:
    for model in ("gpt-5.4-mini", "gpt-4.1"):
        body = body_for(model, max_tokens=5)
        assert body["max_completion_tokens"] == 100
        assert "max_tokens" not in body


def test_sampling_fields_are_dropped_for_reasoning_models_only() -> None:
    assert not set(SAMPLING) & set(body_for("gpt-5.4-mini", **SAMPLING))
    assert not set(SAMPLING) & set(body_for("o3", reasoning_effort="low", **SAMPLING))
    assert set(SAMPLING) <= set(body_for("gpt-4.1", **SAMPLING))
    assert set(SAMPLING) <= set(body_for("gpt-5-chat-latest", **SAMPLING))


def test_reasoning_effort_none_keeps_the_sampling_fields() -> None:
    body = body_for("gpt-5.2", reasoning_effort="none", **SAMPLING)
    assert set(SAMPLING) <= set(body)
    assert body["reasoning_effort"] == "none"


def test_developer_role_and_stream_options_are_kept() -> None:
    messages = [{"role": "developer", "content": "Be brief."}, *HELLO]
    body = body_for("gpt-4.1", stream=True, messages=messages, stream_options={"x": 1})
    assert body["messages"] == messages
    assert body["stream_options"] == {"x": 1, "include_usage": True}


# ---- through the gateway ----------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY) as server:
        yield server


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], fake: FakeOpenAI) -> Gateway:
    fake.reset()
    return gateway_factory(openai_api_key=KEY, openai_base_url=fake.base_url)


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    key = gateway.create_user("alice", "10")
    return openai.OpenAI(base_url=gateway.url + "/ai/openai", api_key=key, max_retries=0)


def test_gpt4o_request_works_on_the_reasoning_model_it_is_aliased_to(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    answer = create(client, model="gpt-4o", messages=HELLO, max_tokens=50, **SAMPLING)
    assert fake.last_request.body == {
        "model": "gpt-5.4-mini",
        "messages": HELLO,
        "max_completion_tokens": 50,
    }
    assert answer.model == "gpt-5.4-mini"
    assert answer.choices[0].message.content == "Hello from openai!"
    assert answer.choices[0].finish_reason == "stop"


def test_chat_model_keeps_its_sampling_fields(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    create(client, model="gpt-4.1", messages=HELLO, temperature=0.2, max_tokens=20)
    assert fake.last_request.body == {
        "model": "gpt-4.1",
        "messages": HELLO,
        "temperature": 0.2,
        "max_completion_tokens": 20,
    }


def test_stream_usage_with_cached_and_reasoning_tokens(
    client: openai.OpenAI, fake: FakeOpenAI, gateway: Gateway
) -> None:
    fake.enqueue(Answer(usage=Usage(cached_tokens=2)))
    chunks = list(
        create(
            client,
            model="gpt-5.4-mini",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from openai!"
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 8)
    assert usage.prompt_tokens_details.cached_tokens == 2
    assert usage.completion_tokens_details.reasoning_tokens == 5
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert (row.prompt_tokens, row.cached_tokens, row.reasoning_tokens) == (5, 2, 5)


def test_stream_without_include_usage_records_upstream_usage(
    client: openai.OpenAI, fake: FakeOpenAI, gateway: Gateway
) -> None:
    chunks = list(create(client, model="gpt-5.4-mini", messages=HELLO, stream=True))
    assert fake.last_request.body["stream_options"] == {"include_usage": True}
    assert all(c.usage is None and c.choices for c in chunks)
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert (row.prompt_tokens, row.completion_tokens, row.usage_estimated) == (5, 8, False)


def test_parallel_streamed_tool_calls(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    calls = (
        ToolCall("get_weather", '{"city": "Paris"}'),
        ToolCall("get_weather", '{"city": "Rome"}'),
    )
    fake.enqueue(Answer(tool_calls=calls))
    stream = create(client, model="gpt-5.4-mini", messages=HELLO, tools=[WEATHER], stream=True)
    got: dict[int, str] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                got[call.index] = got.get(call.index, "") + (call.function.arguments or "")
    assert got == {0: '{"city": "Paris"}', 1: '{"city": "Rome"}'}
    assert finish == "tool_calls"


def test_openai_error_param_and_code_pass_through(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.enqueue(ErrorReply(400, "Unsupported value: 'n'.", param="n", code="unsupported_value"))
    with pytest.raises(openai.BadRequestError) as bad:
        create(client, model="gpt-5.4-mini", messages=HELLO, n=2)
    assert bad.value.body == {
        "message": "openai: Unsupported value: 'n'.",
        "type": "invalid_request_error",
        "param": "n",
        "code": "unsupported_value",
    }
