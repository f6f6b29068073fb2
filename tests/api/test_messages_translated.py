"""The Messages API on the chat-only providers' paths, end to end: the official `anthropic`
SDK -> gateway (translated to chat) -> each provider's fake, and back; every answer charged
the fake's reported usage at the catalog price, every refusal free and never sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from ai_service.billing import tokens
from ai_service.billing.pricing import cost
from ai_service.providers.base import Usage
from tests.fakes import FakeDeepSeek, FakeMistral, FakeServer, FakeTogether
from tests.fakes.behaviours import Answer, ErrorReply, ToolCall, Usage as FakeUsage
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

KEY = "sk-upstream-messages-0123456789"


@dataclass(frozen=True)
class Path:
    """A provider path, its provider, a model the catalog prices, and whether its upstream
    reports cache reads."""

    path: str
    provider: str
    model: str
    reports_cache: bool


PATHS = {
    "openai": Path("openai", "openai", "gpt-5.4-mini", True),
    "v1": Path("v1", "openai", "gpt-5.4-mini", True),
    "mistral": Path("mistral", "mistral", "mistral-small-latest", False),
    "llama": Path("llama", "llama", "meta-llama/Llama-3.3-70B-Instruct-Turbo", False),
    "deepseek": Path("deepseek", "deepseek", "deepseek-chat", True),
}
EVERY_PATH = list(PATHS)
WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
ASKED = [{"role": "user", "content": "Weather in Paris?"}]
REPORTED = FakeUsage(prompt_tokens=40, completion_tokens=12, cached_tokens=8)


@pytest.fixture(autouse=True, scope="module")
def tokenizer() -> None:
    """Loaded, as in a gateway past its first seconds (it loads in a thread at startup)."""
    assert tokens.load()


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeServer]]:
    with (
        FakeOpenAI(api_key=KEY) as openai_fake,
        FakeMistral(api_key=KEY) as mistral,
        FakeTogether(api_key=KEY) as together,
        FakeDeepSeek(api_key=KEY) as deepseek,
    ):
        yield {"openai": openai_fake, "mistral": mistral, "llama": together, "deepseek": deepseek}


@pytest.fixture
def gw(gateway_factory: Callable[..., Gateway], fakes: dict[str, FakeServer]) -> Gateway:
    for fake in fakes.values():
        fake.reset()
    return gateway_factory(
        openai_api_key=KEY,
        openai_base_url=fakes["openai"].base_url,
        mistral_api_key=KEY,
        mistral_base_url=fakes["mistral"].base_url,
        together_api_key=KEY,
        together_base_url=fakes["llama"].base_url,
        deepseek_api_key=KEY,
        deepseek_base_url=fakes["deepseek"].base_url,
    )


def sdk(gw: Gateway, key: str, path: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{gw.url}/ai/{path}", api_key=key, max_retries=0)


def charged(gw: Gateway, name: str, before: int) -> int:
    return before - gw.balance(name)[0]


def reported(where: Path) -> Usage:
    """What the fake reports for `REPORTED`, in the gateway's terms."""
    cached = 8 if where.reports_cache else 0
    return Usage(input_tokens=40 - cached, cache_read_tokens=cached, output_tokens=12)


def price_of(gw: Gateway, where: Path) -> int:
    """The cost of `REPORTED` at the catalog's price of the path's model."""
    price = gw.state.catalog.current.resolve(where.provider, where.model).price
    return cost(reported(where), price)


def anthropic_usage(usage: Any) -> tuple[int, int, int]:
    return (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens)


@pytest.mark.parametrize("path", EVERY_PATH)
def test_create_with_a_tool_round_trip_charges_each_answer_its_reported_usage(
    gw: Gateway, fakes: dict[str, FakeServer], path: str
) -> None:
    where = PATHS[path]
    fake = fakes[where.provider]
    key = gw.create_user("alice", "10")
    before = gw.balance("alice")[0]
    client = sdk(gw, key, path)
    fake.enqueue(
        Answer(tool_calls=(ToolCall("get_weather", '{"city": "Paris"}'),), usage=REPORTED),
        Answer(text="It is 18C in Paris.", usage=REPORTED),
    )
    first = client.messages.create(
        model=where.model,
        max_tokens=256,
        system="You forecast weather.",
        tools=[WEATHER],  # type: ignore[list-item]  # the SDK's TypedDict union
        messages=ASKED,  # type: ignore[arg-type]  # idem
    )
    assert first.type == "message" and first.role == "assistant"
    assert first.id.startswith("msg_")
    assert first.model == where.model
    assert first.stop_reason == "tool_use"
    tool = first.content[-1]
    assert tool.type == "tool_use"
    assert (tool.name, tool.input) == ("get_weather", {"city": "Paris"})
    assert anthropic_usage(first.usage) == anthropic_usage_of(reported(where))
    sent = fake.last_request.body
    assert sent["messages"] == [
        {"role": "system", "content": "You forecast weather."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert "stream" not in sent

    second = client.messages.create(
        model=where.model,
        max_tokens=256,
        tools=[WEATHER],  # type: ignore[list-item]  # the SDK's TypedDict union
        messages=[
            *ASKED,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "18C"}],
            },
        ],  # type: ignore[list-item]  # idem
    )
    assert [block.type for block in second.content] == ["text"]
    assert second.content[0].text == "It is 18C in Paris."  # type: ignore[union-attr]
    assert second.stop_reason == "end_turn"
    turn = fake.last_request.body["messages"]
    assert [m["role"] for m in turn] == ["user", "assistant", "tool"]
    assert turn[1]["tool_calls"][0]["id"] == turn[2]["tool_call_id"] == tool.id
    assert turn[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert turn[2]["content"] == "18C"

    one = price_of(gw, where)
    assert charged(gw, "alice", before) == 2 * one > 0
    rows = gw.requests()
    assert [(r.surface, r.provider, r.model, r.status) for r in rows] == [
        ("messages", where.provider, where.model, "ok")
    ] * 2
    assert [r.cost for r in rows] == [one, one]
    assert all(not r.usage_estimated for r in rows)


def anthropic_usage_of(usage: Usage) -> tuple[int, int, int]:
    return (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens)


@pytest.mark.parametrize("path", EVERY_PATH)
def test_a_stream_reads_with_the_sdk_helpers_and_is_charged_its_reported_usage(
    gw: Gateway, fakes: dict[str, FakeServer], path: str
) -> None:
    where = PATHS[path]
    fake = fakes[where.provider]
    key = gw.create_user("alice", "10")
    before = gw.balance("alice")[0]
    text = "The sea is calm tonight and the ships are home."
    fake.enqueue(Answer(text=text, usage=REPORTED))
    with sdk(gw, key, path).messages.stream(
        model=where.model, max_tokens=256, messages=[{"role": "user", "content": "Tell me"}]
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text
    assert [block.type for block in final.content] == ["text"]
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.model == where.model
    assert anthropic_usage(final.usage) == anthropic_usage_of(reported(where))
    sent = fake.last_request.body
    assert sent["stream"] is True
    if where.provider in ("openai", "deepseek"):  # the others send usage without the option
        assert sent["stream_options"] == {"include_usage": True}
    gw.wait_settled()
    (row,) = gw.requests()
    assert (row.surface, row.status, row.stream, row.usage_estimated) == (
        "messages",
        "ok",
        True,
        False,
    )
    assert charged(gw, "alice", before) == row.cost == price_of(gw, where) > 0


def events_of(received: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The SSE frames of a Messages stream as (event name, data); each names its type."""
    frames = received.split(b"\n\n")
    assert frames.pop() == b""
    out = []
    for frame in frames:
        head, data = frame.split(b"\n")
        name = head.removeprefix(b"event: ").decode()
        payload = orjson.loads(data.removeprefix(b"data: "))
        assert payload["type"] == name
        out.append((name, payload))
    return out


@pytest.mark.parametrize("path", ["openai", "mistral"])
def test_stream_bytes_are_anthropic_s_event_sequence(
    gw: Gateway, fakes: dict[str, FakeServer], path: str
) -> None:
    where = PATHS[path]
    key = gw.create_user("alice", "10")
    body = {"model": where.model, "max_tokens": 64, "messages": ASKED, "stream": True}
    with httpx.stream(
        "POST", f"{gw.url}/ai/{path}/v1/messages", json=body, headers={"x-api-key": key}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-served-model"] == where.model
        received = r.read()
    names = [name for name, _ in events_of(received)]
    deltas = ["content_block_delta"] * names.count("content_block_delta")
    assert len(deltas) >= 2
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert b"[DONE]" not in received and b"chat.completion" not in received


@pytest.mark.parametrize("path", ["openai", "mistral", "llama", "deepseek"])
def test_a_streamed_tool_call_arrives_as_input_json(
    gw: Gateway, fakes: dict[str, FakeServer], path: str
) -> None:
    where = PATHS[path]
    fakes[where.provider].enqueue(
        Answer(tool_calls=(ToolCall("get_weather", '{"city": "Paris", "unit": "C"}'),))
    )
    key = gw.create_user("alice", "10")
    with sdk(gw, key, path).messages.stream(
        model=where.model,
        max_tokens=256,
        tools=[WEATHER],  # type: ignore[list-item]  # the SDK's TypedDict union
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=ASKED,  # type: ignore[arg-type]  # idem
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    (tool,) = final.content
    assert tool.type == "tool_use"
    assert (tool.name, tool.input) == ("get_weather", {"city": "Paris", "unit": "C"})
    assert final.stop_reason == "tool_use"
    assert "input_json" in events  # the SDK read the tool's streamed input
    sent = fakes[where.provider].last_request.body
    assert sent["parallel_tool_calls"] is False
    assert sent["tool_choice"] == ("any" if path == "mistral" else "required")


def test_deepseek_reasoning_streams_as_a_thinking_block(
    gw: Gateway, fakes: dict[str, FakeServer]
) -> None:
    key = gw.create_user("alice", "10")
    fakes["deepseek"].enqueue(Answer(text="Forty-two.", reasoning="Let me count."))
    with sdk(gw, key, "deepseek").messages.stream(
        model="deepseek-reasoner",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "The answer?"}],
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    thinking, text = final.content
    assert thinking.type == "thinking" and thinking.thinking == "Let me count."
    assert text.type == "text" and text.text == "Forty-two."
    assert "thinking" in events
    assert fakes["deepseek"].last_request.body["reasoning_effort"] == "low"
    message = sdk(gw, key, "deepseek").messages.create(
        model="deepseek-reasoner",
        max_tokens=2048,
        messages=[
            {"role": "user", "content": "The answer?"},
            {"role": "assistant", "content": final.content},
            {"role": "user", "content": "Why?"},
        ],  # type: ignore[list-item]  # the SDK's TypedDict union
    )
    assert message.content[0].type == "thinking"
    history = fakes["deepseek"].last_request.body["messages"]
    assert history[1] == {"role": "assistant", "content": "Forty-two."}  # no reasoning back


def test_max_tokens_above_the_model_s_maximum_output_is_lowered_to_it(
    gw: Gateway, fakes: dict[str, FakeServer]
) -> None:
    key = gw.create_user("alice", "10")
    # set for a Claude model; DeepSeek's chat model refuses more than 8192
    message = sdk(gw, key, "deepseek").messages.create(
        model="deepseek-chat",
        max_tokens=16000,
        messages=ASKED,  # type: ignore[arg-type]  # the SDK's TypedDict union
    )
    assert message.stop_reason == "end_turn"
    assert fakes["deepseek"].last_request.body["max_tokens"] == 8192
    sdk(gw, key, "deepseek").messages.create(
        model="deepseek-chat",
        max_tokens=100,
        messages=ASKED,  # type: ignore[arg-type]
    )
    assert fakes["deepseek"].last_request.body["max_tokens"] == 100


REFUSED = [
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
    ({"top_k": 5}, "top_k"),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {
                                "type": "base64",
                                "media_type": "application/pdf",
                                "data": "JVBERi0=",
                            },
                        },
                        {"type": "text", "text": "Summarize"},
                    ],
                }
            ]
        },
        "messages[0].content[0]",
    ),
    ({"mcp_servers": [{"type": "url", "url": "https://x.test", "name": "x"}]}, "mcp_servers"),
    ({"x_unknown": True}, "x_unknown"),
]


@pytest.mark.parametrize("path", EVERY_PATH)
@pytest.mark.parametrize(("fields", "param"), REFUSED)
def test_a_field_that_cannot_be_translated_is_free_and_never_sent(
    gw: Gateway, fakes: dict[str, FakeServer], path: str, fields: dict[str, Any], param: str
) -> None:
    where = PATHS[path]
    key = gw.create_user("alice", "10")
    before = gw.balance("alice")
    body = {"model": where.model, "max_tokens": 64, "messages": ASKED, **fields}
    r = httpx.post(f"{gw.url}/ai/{path}/v1/messages", json=body, headers={"x-api-key": key})
    assert r.status_code == 400
    error = anthropic_error(r)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(param)
    assert all(fake.requests == [] for fake in fakes.values())
    assert gw.balance("alice") == before
    (row,) = gw.requests()
    assert (row.surface, row.status, row.http_status, row.cost) == ("messages", "error", 400, 0)


def test_the_sdk_raises_its_own_errors_for_the_gateway_refusals(
    gw: Gateway, fakes: dict[str, FakeServer]
) -> None:
    key = gw.create_user("alice", "10")
    client = sdk(gw, key, "mistral")
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(
            model="mistral-small-latest",
            max_tokens=64,
            messages=ASKED,  # type: ignore[arg-type]  # the SDK's TypedDicts
            extra_body={"top_k": 5},
        )
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="not-a-model-9", max_tokens=64, messages=ASKED)  # type: ignore[arg-type]
    with pytest.raises(anthropic.AuthenticationError):
        sdk(gw, "sk-wrong", "mistral").messages.create(
            model="mistral-small-latest",
            max_tokens=64,
            messages=ASKED,  # type: ignore[arg-type]
        )
    poor = gw.create_user("poor", "0")
    with pytest.raises(anthropic.APIStatusError) as unpaid:
        sdk(gw, poor, "mistral").messages.create(
            model="mistral-small-latest",
            max_tokens=64,
            messages=ASKED,  # type: ignore[arg-type]
        )
    assert unpaid.value.status_code == 402
    assert unpaid.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert fakes["mistral"].requests == []


def test_an_upstream_refusal_reaches_the_sdk_in_anthropic_shape_and_is_free(
    gw: Gateway, fakes: dict[str, FakeServer]
) -> None:
    key = gw.create_user("alice", "10")
    before = gw.balance("alice")
    fakes["openai"].enqueue(ErrorReply(400, "Invalid 'messages[1].content': too long."))
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(gw, key, "openai").messages.create(
            model="gpt-5.4-mini",
            max_tokens=64,
            messages=ASKED,  # type: ignore[arg-type]
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error" and "too long" in body["error"]["message"]
    assert gw.balance("alice") == before


def test_an_upstream_error_mid_stream_ends_with_an_anthropic_error_event(
    gw: Gateway, fakes: dict[str, FakeServer]
) -> None:
    key = gw.create_user("alice", "10")
    before = gw.balance("alice")
    fakes["llama"].enqueue(Answer(text="one two three four five", error_after=2))
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        sdk(gw, key, "llama").messages.stream(
            model=PATHS["llama"].model,
            max_tokens=64,
            messages=ASKED,  # type: ignore[arg-type]
        ) as stream,
    ):
        received.extend(stream.text_stream)
    assert received  # the text before the error was relayed
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    gw.wait_settled()
    (row,) = gw.requests()
    assert (row.status, row.cost) == ("error", 0)
    assert gw.balance("alice") == before


async def leave_after(gw: Gateway, key: str, path: str, body: dict[str, Any], mark: bytes) -> bytes:
    """Stream `body`, read until `mark` arrived, then close the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    payload = orjson.dumps(body)
    head = (
        f"POST /ai/{path}/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"x-api-key: {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await writer.drain()
    received = b""
    try:
        async with asyncio.timeout(10):
            while mark not in received:
                piece = await reader.read(65536)
                if not piece:
                    break
                received += piece
    finally:
        writer.close()
    return received


@pytest.mark.parametrize("path", ["openai", "deepseek"])
def test_a_client_that_leaves_mid_stream_is_settled_once(
    gw: Gateway, fakes: dict[str, FakeServer], path: str
) -> None:
    where = PATHS[path]
    fake = fakes[where.provider]
    key = gw.create_user("alice", "10")
    before = gw.balance("alice")[0]
    fake.enqueue(Answer(text="one two three four", first_delay=1, chunk_delay=0.2))
    body = {"model": where.model, "max_tokens": 64, "messages": ASKED, "stream": True}
    received = asyncio.run(leave_after(gw, key, path, body, b"event: message_start"))
    assert b"text_delta" not in received
    assert fake.last_request.wait_done()
    gw.wait_settled()
    time.sleep(0.3)  # a second settlement would land meanwhile
    (row,) = gw.requests()
    assert (row.status, row.http_status, row.surface) == ("cancelled", 499, "messages")
    # the prompt is charged (estimated: the usage never came), no output was delivered
    assert row.usage_estimated is True
    assert row.prompt_tokens > 0 and row.completion_tokens == 0
    assert charged(gw, "alice", before) == row.cost > 0
    assert gw.reconcile() == []
    assert gw.balance("alice")[1] == 0


def test_an_idempotent_retry_is_replayed_and_charged_once(
    gw: Gateway, fakes: dict[str, FakeServer]
) -> None:
    key = gw.create_user("alice", "10")
    before = gw.balance("alice")[0]
    client = sdk(gw, key, "mistral")
    headers = {"Idempotency-Key": "retry-1"}
    ask = {"model": "mistral-small-latest", "max_tokens": 64, "messages": ASKED}
    first = client.messages.create(**ask, extra_headers=headers)  # type: ignore[arg-type]
    again = client.messages.with_raw_response.create(**ask, extra_headers=headers)  # type: ignore[arg-type]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse() == first
    assert len(fakes["mistral"].requests) == 1
    # the same key for another body is not this request
    with pytest.raises(anthropic.ConflictError):
        client.messages.create(**{**ask, "max_tokens": 65}, extra_headers=headers)  # type: ignore[arg-type]
    (row,) = gw.requests()
    assert charged(gw, "alice", before) == row.cost > 0


def test_an_idempotent_stream_is_replayed_byte_for_byte(
    gw: Gateway, fakes: dict[str, FakeServer]
) -> None:
    key = gw.create_user("alice", "10")
    headers = {"x-api-key": key, "Idempotency-Key": "stream-1"}
    body = {"model": "gpt-5.4-mini", "max_tokens": 64, "messages": ASKED, "stream": True}
    url = f"{gw.url}/ai/openai/v1/messages"
    with httpx.stream("POST", url, json=body, headers=headers) as r:
        first = r.read()
    gw.wait_settled()
    with httpx.stream("POST", url, json=body, headers=headers) as r:
        assert r.headers["idempotent-replayed"] == "true"
        again = r.read()
    assert again == first
    assert [name for name, _ in events_of(again)][-1] == "message_stop"
    assert len(fakes["openai"].requests) == 1


@pytest.mark.parametrize("path", EVERY_PATH)
def test_count_tokens_is_the_gateway_s_own_count_and_free(
    gw: Gateway, fakes: dict[str, FakeServer], path: str
) -> None:
    where = PATHS[path]
    key = gw.create_user("alice", "10")
    before = gw.balance("alice")
    text = "Hello there, how is the weather in Paris today?"
    counted = sdk(gw, key, path).messages.count_tokens(
        model=where.model, messages=[{"role": "user", "content": text}]
    )
    exact = tokens.count_tokens(text) + tokens.PER_MESSAGE + tokens.REPLY_PRIMING
    if where.provider == "openai":
        assert counted.input_tokens == exact
    else:  # another provider's tokenizer is not public: a bound above OpenAI's count
        assert counted.input_tokens > exact
    with_tools = sdk(gw, key, path).messages.count_tokens(
        model=where.model,
        system="Be brief.",
        tools=[WEATHER],  # type: ignore[list-item]  # the SDK's TypedDict union
        messages=[{"role": "user", "content": text}],
    )
    assert with_tools.input_tokens > counted.input_tokens
    assert all(fake.requests == [] for fake in fakes.values())
    assert gw.balance("alice") == before
    assert gw.requests() == []


def test_count_tokens_refuses_what_create_refuses(
    gw: Gateway, fakes: dict[str, FakeServer]
) -> None:
    key = gw.create_user("alice", "10")
    url = f"{gw.url}/ai/llama/v1/messages/count_tokens"
    model = PATHS["llama"].model
    for body, param in (
        ({"model": model, "messages": ASKED, "top_k": 3}, "top_k"),
        ({"model": "no-such-model-9", "messages": ASKED}, "model"),
        ({"model": model, "messages": []}, "messages"),
    ):
        r = httpx.post(url, json=body, headers={"x-api-key": key})
        assert r.status_code == 400, r.text
        assert anthropic_error(r)["type"] == "invalid_request_error"
        assert param in anthropic_error(r)["message"]
    r = httpx.post(url, json={"model": model, "messages": ASKED}, headers={"x-api-key": "x"})
    assert r.status_code == 401
    assert anthropic_error(r)["type"] == "authentication_error"


def anthropic_error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    return body["error"]


def test_an_unknown_provider_path_is_404_in_anthropic_shape(gw: Gateway) -> None:
    key = gw.create_user("alice", "10")
    r = httpx.post(
        f"{gw.url}/ai/nope/v1/messages",
        json={"model": "m", "max_tokens": 1, "messages": ASKED},
        headers={"x-api-key": key},
    )
    assert r.status_code == 404
    assert anthropic_error(r)["type"] == "not_found_error"
