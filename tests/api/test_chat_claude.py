"""The Claude path end to end: OpenAI SDK -> gateway -> Anthropic Messages fake, and back."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from ai_service.billing.money import price_to_micro
from ai_service.billing.pricing import Price, cost
from ai_service.providers.base import Usage
from tests.fakes.anthropic_messages import FakeAnthropic
from tests.fakes.behaviours import Answer, ErrorReply, ToolCall, Usage as FakeUsage
from tests.support.gateway import Gateway

KEY = "sk-ant-upstream-test"
MODEL = "claude-3-5-sonnet-20241022"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def claude(gateway_factory, anthropic_fake: FakeAnthropic) -> Gateway:
    anthropic_fake.reset()
    return gateway_factory(anthropic_api_key=KEY, anthropic_base_url=anthropic_fake.base_url)


def client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/ai/claude", api_key=key, max_retries=0)


def catalog_price(gw: Gateway, model: str) -> Price:
    return gw.state.catalog.current.resolve("claude", model).price


def test_text_answer_and_the_translated_request(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    answer = client(claude, key).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Hello"},
            {"role": "user", "content": "there"},
        ],
        stop=["END"],
        temperature=0.5,
        seed=3,
    )
    assert answer.choices[0].message.content == "Hello from anthropic!"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == MODEL
    (seen,) = anthropic_fake.requests
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers["anthropic-version"]
    body = seen.body
    assert body["system"] == "You are terse.\n\nAnswer in English."
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["max_tokens"] == catalog_price(claude, MODEL).max_output
    assert body["stop_sequences"] == ["END"]
    assert "seed" not in body
    (row,) = claude.requests()
    assert (row.provider, row.status, row.model) == ("claude", "ok", MODEL)
    assert row.prompt_tokens == answer.usage.prompt_tokens


def test_stream_text_with_usage(claude: Gateway) -> None:
    key = claude.create_user("alice", "10")
    chunks = list(
        client(claude, key).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from anthropic!"
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    assert chunks[-1].usage is not None
    claude.wait_settled()
    (row,) = claude.requests()
    assert row.completion_tokens == chunks[-1].usage.completion_tokens
    assert row.usage_estimated is False


def test_tool_calls_stream_and_not_agree(claude: Gateway, anthropic_fake: FakeAnthropic) -> None:
    key = claude.create_user("alice", "10")
    call = ToolCall(name="get_weather", arguments='{"city": "Paris", "unit": "celsius"}')
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    anthropic_fake.enqueue(Answer(tool_calls=(call,)))
    answer = client(claude, key).chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, tool_choice="required"
    )
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    whole = message.tool_calls[0]
    assert whole.function.name == "get_weather"
    assert json.loads(whole.function.arguments) == {"city": "Paris", "unit": "celsius"}
    sent = anthropic_fake.requests[0].body
    assert sent["tool_choice"] == {"type": "any"}
    assert sent["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}

    anthropic_fake.enqueue(Answer(tool_calls=(call,)))
    stream = client(claude, key).chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, stream=True
    )
    arguments, name, finish = "", None, None
    for chunk in stream:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            if delta.function and delta.function.name:
                name = delta.function.name
            arguments += (delta.function.arguments or "") if delta.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, finish) == ("get_weather", "tool_calls")
    assert arguments == whole.function.arguments


def test_tool_results_round_trip(claude: Gateway, anthropic_fake: FakeAnthropic) -> None:
    key = claude.create_user("alice", "10")
    client(claude, key).chat.completions.create(
        model=MODEL,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
        ],
    )
    messages = anthropic_fake.requests[0].body["messages"]
    assert messages[1]["content"][0] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert messages[2]["role"] == "user"
    assert messages[2]["content"][0]["type"] == "tool_result"
    assert messages[2]["content"][0]["tool_use_id"] == "call_1"


def test_cache_tokens_are_priced_and_stream_equals_non_stream(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    usage = FakeUsage(
        prompt_tokens=50, cached_tokens=2000, cache_creation_tokens=300, completion_tokens=40
    )
    anthropic_fake.enqueue(Answer(usage=usage), Answer(usage=usage))
    messages = [{"role": "user", "content": "Hello"}]
    answer = client(claude, key).chat.completions.create(model=MODEL, messages=messages)
    list(client(claude, key).chat.completions.create(model=MODEL, messages=messages, stream=True))
    claude.wait_settled()
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 50 + 2000 + 300
    first, second = claude.requests()
    price = catalog_price(claude, MODEL)
    expected = cost(
        Usage(input_tokens=50, cache_read_tokens=2000, cache_write_tokens=300, output_tokens=40),
        price,
    )
    assert price.cached_input == price_to_micro("0.30")
    assert (first.cost, second.cost) == (expected, expected)
    assert (first.cached_tokens, first.cache_write_tokens) == (2000, 300)


def test_overloaded_is_503_and_free(claude: Gateway, anthropic_fake: FakeAnthropic) -> None:
    key = claude.create_user("alice", "10")
    anthropic_fake.enqueue(*[ErrorReply(529)] * 3)
    r = httpx.post(
        claude.url + "/ai/claude/chat/completions",
        headers={"X-API-Key": key},
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "service_unavailable"
    (row,) = claude.requests()
    assert (row.status, row.cost) == ("error", 0)


def test_claude_invalid_request_is_passed_on(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    anthropic_fake.enqueue(ErrorReply(400, message="messages: too many images"))
    r = httpx.post(
        claude.url + "/ai/claude/chat/completions",
        headers={"X-API-Key": key},
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 400
    assert "too many images" in r.json()["error"]["message"]


def test_claude_models_are_listed(claude: Gateway) -> None:
    key = claude.create_user("alice", "10")
    ids = {m.id for m in client(claude, key).models.list().data}
    assert {"claude-3-5-sonnet-20241022", "claude-3-haiku-20240307"} <= ids
