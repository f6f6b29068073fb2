"""DeepSeek's quirks: pure transforms, then the official SDK through a gateway to FakeDeepSeek."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from ai_service.providers.base import ChatRequest
from ai_service.providers.deepseek import QUIRKS, strip_reasoning
from ai_service.providers.openai_compat import build_body
from tests.fakes import Answer, ErrorReply, FakeDeepSeek, ToolCall, Usage
from tests.support.gateway import Gateway

KEY = "sk-deepseek-upstream-0123456789"
REASONER = "deepseek-reasoner"
CHAT = "deepseek-chat"
HELLO = [{"role": "user", "content": "Say hello"}]
THOUGHT = "Let me think about it."
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = {
    "id": "call_0_abc",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}


def body_for(model: str = CHAT, stream: bool = False, **fields: Any) -> dict[str, Any]:
    req = ChatRequest({"model": model, "messages": HELLO, **fields}, model, stream, 100)
    return build_body(req, QUIRKS)


def create(client: openai.OpenAI, **fields: Any) -> Any:
    """`chat.completions.create` with plain dicts (the SDK's TypedDicts are not the point here)."""
    return client.chat.completions.create(**fields)


def history() -> list[dict[str, Any]]:
    """A finished plain turn, a finished tool turn, and an open tool turn."""
    return [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "reasoning_content": "greet"},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "reasoning_content": "look", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_0_abc", "content": "18C"},
        {"role": "assistant", "content": "18C in Paris", "reasoning_content": "say it"},
        {"role": "user", "content": "And Rome?"},
        {"role": "assistant", "content": "", "reasoning_content": "again", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_0_abc", "content": "21C"},
    ]


# ---- pure transforms ---------------------------------------------------------------


def test_reasoning_content_is_kept_only_in_turns_with_tool_calls() -> None:
    messages = history()
    before = copy.deepcopy(messages)
    out = strip_reasoning(messages)
    assert out[1] == {"role": "assistant", "content": "Hello"}
    assert [m.get("reasoning_content") for m in out[3:6]] == ["look", None, "say it"]
    assert out[7]["reasoning_content"] == "again"
    assert out[0] is messages[0]
    assert messages == before


def test_reasoning_content_of_a_plain_open_turn_is_stripped() -> None:
    messages: list[Any] = [*HELLO, {"role": "assistant", "content": "", "reasoning_content": "x"}]
    assert strip_reasoning([*messages, "junk"]) == [
        *HELLO,
        {"role": "assistant", "content": ""},
        "junk",
    ]


def test_developer_role_is_sent_as_system() -> None:
    body = body_for(messages=[{"role": "developer", "content": "Be brief."}, *HELLO])
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_reasoning_effort_none_disables_thinking() -> None:
    body = body_for(reasoning_effort="none")
    assert "reasoning_effort" not in body
    assert body["thinking"] == {"type": "disabled"}
    kept = body_for(reasoning_effort="none", thinking={"type": "enabled"})
    assert kept["thinking"] == {"type": "enabled"}
    assert body_for(reasoning_effort="max")["reasoning_effort"] == "max"


@pytest.mark.parametrize(
    ("model", "kept"), [(REASONER, False), ("deepseek-r1", False), (CHAT, True)]
)
def test_logprobs_are_dropped_for_the_legacy_reasoner(model: str, kept: bool) -> None:
    body = body_for(model, logprobs=True, top_logprobs=2)
    assert ("logprobs" in body, "top_logprobs" in body) == (kept, kept)


def test_stream_asks_for_usage_with_stream_options() -> None:
    assert body_for(stream=True)["stream_options"] == {"include_usage": True}


# ---- through the gateway ----------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDeepSeek]:
    with FakeDeepSeek(api_key=KEY) as server:
        yield server


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], fake: FakeDeepSeek) -> Gateway:
    fake.reset()
    return gateway_factory(deepseek_api_key=KEY, deepseek_base_url=fake.base_url)


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    key = gateway.create_user("alice", "10")
    return openai.OpenAI(base_url=gateway.url + "/ai/deepseek", api_key=key, max_retries=0)


def test_reasoner_answer_with_reasoning_content_and_cache_hits(
    client: openai.OpenAI, fake: FakeDeepSeek, gateway: Gateway
) -> None:
    fake.enqueue(Answer(usage=Usage(cached_tokens=3)))
    answer = create(client, model=REASONER, messages=HELLO)
    assert fake.last_request.path == "/chat/completions"
    assert fake.last_request.body == {"model": REASONER, "messages": HELLO, "max_tokens": 64000}
    message = answer.choices[0].message
    assert (message.content, message.reasoning_content) == ("Hello from deepseek!", THOUGHT)
    assert answer.choices[0].finish_reason == "stop"
    usage = answer.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 8)
    assert (usage.prompt_cache_hit_tokens, usage.prompt_cache_miss_tokens) == (3, 2)
    assert usage.completion_tokens_details.reasoning_tokens == 5
    (row,) = gateway.requests()
    assert (row.prompt_tokens, row.cached_tokens, row.completion_tokens) == (5, 3, 8)
    assert row.reasoning_tokens == 5


def test_streamed_reasoning_content_and_usage(
    client: openai.OpenAI, fake: FakeDeepSeek, gateway: Gateway
) -> None:
    fake.enqueue(Answer(usage=Usage(cached_tokens=2)))
    chunks = list(
        create(
            client,
            model=REASONER,
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert fake.last_request.body["stream_options"] == {"include_usage": True}
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == THOUGHT
    assert "".join(d.content or "" for d in deltas) == "Hello from deepseek!"
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_cache_hit_tokens == 2
    assert chunks[-2].choices[0].finish_reason == "stop"
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert (row.prompt_tokens, row.cached_tokens, row.completion_tokens) == (5, 2, 8)


def test_stream_without_include_usage_still_asks_upstream_for_it(
    client: openai.OpenAI, fake: FakeDeepSeek, gateway: Gateway
) -> None:
    chunks = list(create(client, model=CHAT, messages=HELLO, stream=True))
    assert fake.last_request.body["stream_options"] == {"include_usage": True}
    assert all(c.usage is None and c.choices for c in chunks)
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert (row.prompt_tokens, row.completion_tokens, row.usage_estimated) == (5, 3, False)


def test_history_is_sent_as_deepseek_wants_it(client: openai.OpenAI, fake: FakeDeepSeek) -> None:
    messages = [{"role": "developer", "content": "Be brief."}, *history()]
    create(
        client,
        model=REASONER,
        messages=messages,
        tools=[WEATHER],
        reasoning_effort="none",
        logprobs=True,
        max_tokens=100,
    )
    expected = strip_reasoning(history())
    assert fake.last_request.body == {
        "model": REASONER,
        "messages": [{"role": "system", "content": "Be brief."}, *expected],
        "tools": [WEATHER],
        "thinking": {"type": "disabled"},
        "max_tokens": 100,
    }
    assert "reasoning_content" not in expected[1]
    assert expected[3]["reasoning_content"] == "look"


def test_streamed_tool_calls_keep_deepseek_ids(client: openai.OpenAI, fake: FakeDeepSeek) -> None:
    fake.enqueue(Answer(tool_calls=(ToolCall("get_weather", '{"city":"Paris"}'),)))
    stream = create(client, model=CHAT, messages=HELLO, tools=[WEATHER], stream=True)
    ids, args, finish = "", "", None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                ids += call.id or ""
                args += call.function.arguments or ""
    assert ids.startswith("call_0_")
    assert (args, finish) == ('{"city":"Paris"}', "tool_calls")


def test_deepseek_errors(client: openai.OpenAI, fake: FakeDeepSeek) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        create(client, model=CHAT, messages=HELLO, max_tokens=9000)
    assert bad.value.body == {
        "message": "deepseek: Invalid max_tokens value, the valid range of max_tokens is [1, 8192]",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    fake.enqueue(ErrorReply(402))
    with pytest.raises(openai.InternalServerError) as balance:
        create(client, model=CHAT, messages=HELLO)
    assert balance.value.status_code == 502
    assert "operator" in balance.value.message
