"""The Responses API through the gateway, with the official SDK against the OpenAI fake:
each call charged the fake's reported usage at the catalog price, streams relayed event
for event, bad input refused free (the other paths: test_responses_translated)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from decimal import Decimal
from typing import Any

import httpx
import openai
import orjson
import pytest

from ai_service.billing import tokens
from ai_service.billing.pricing import cost
from ai_service.providers.base import Usage
from tests.conftest import UPSTREAM_KEY
from tests.fakes.behaviours import Answer, ErrorReply, ToolCall, Usage as FakeUsage
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

MODEL = "gpt-5.4-mini"  # a reasoning model: the fake reasons before it answers
PLAIN = "gpt-4.1"  # no reasoning
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def sdk(gateway: Gateway, key: str, path: str = "openai") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/ai/{path}", api_key=key, max_retries=0)


def charge_of(gateway: Gateway, model: str, usage: Any) -> int:
    """The cost of a Responses API `usage` at the catalog's price of `model`."""
    cached = usage.input_tokens_details.cached_tokens
    normalized = Usage(
        input_tokens=usage.input_tokens - cached,
        cache_read_tokens=cached,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.output_tokens_details.reasoning_tokens,
    )
    return cost(normalized, gateway.state.catalog.current.resolve("openai", model).price)


def wait_settled(gw: Gateway, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while gw.scalar("SELECT count(*) FROM api_requests WHERE status = 'pending'"):
        if time.monotonic() > deadline:
            raise AssertionError("requests still pending")
        time.sleep(0.02)


@pytest.mark.parametrize("path", ["openai", "v1"])
def test_a_response_is_charged_its_reported_usage_cached_and_reasoning_included(
    gateway: Gateway, openai_upstream: FakeOpenAI, path: str
) -> None:
    openai_upstream.enqueue(Answer(usage=FakeUsage(prompt_tokens=1200, cached_tokens=1024)))
    key = gateway.create_user("alice", "10")
    response = sdk(gateway, key, path).responses.create(
        model=MODEL, input="Say hello", instructions="Be brief.", max_output_tokens=500
    )
    assert response.output_text == "Hello from openai!"
    assert response.model == MODEL
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (1200, 1024)
    assert usage.output_tokens_details.reasoning_tokens > 0
    expected = charge_of(gateway, MODEL, usage)
    (row,) = gateway.requests()
    assert (row.status, row.http_status, row.provider, row.model) == ("ok", 200, "openai", MODEL)
    assert row.surface == "responses"
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'status="ok",surface="responses"' in metrics
    assert 'route="responses"' in metrics
    assert (row.prompt_tokens, row.completion_tokens) == (1200, usage.output_tokens)
    assert row.cost == expected > 0
    assert row.usage_estimated is False
    assert (usage.model_extra or {})["cost"] == pytest.approx(expected / 1e9)
    assert gateway.balance("alice") == (10 * 10**9 - expected, 0)


def test_the_body_reaches_openai_unchanged(gateway: Gateway, openai_upstream: FakeOpenAI) -> None:
    key = gateway.create_user("alice", "10")
    body: dict[str, Any] = {
        "model": PLAIN,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}],
        "instructions": "Be brief.",
        "max_output_tokens": 64,
        "store": False,
        "text": {"format": {"type": "text"}},
        "metadata": {"team": "search"},
        "tools": [WEATHER],
        "temperature": 0.5,
    }
    r = httpx.post(
        f"{gateway.url}/ai/openai/responses", headers={"X-API-Key": key}, json=body, timeout=10
    )
    assert r.status_code == 200, r.text
    sent = openai_upstream.last_request
    assert (sent.method, sent.path) == ("POST", "/v1/responses")
    assert sent.body == body
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    (row,) = gateway.requests()
    assert Decimal(r.headers["X-Request-Cost"]) == Decimal(row.cost) / 10**9
    assert r.headers["X-Served-Model"] == PLAIN


def test_without_a_limit_the_models_maximum_is_sent_and_reserved(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    sdk(gateway, key).responses.create(model=PLAIN, input="hi")
    price = gateway.state.catalog.current.resolve("openai", PLAIN).price
    assert openai_upstream.last_request.body["max_output_tokens"] == price.max_output


def test_a_small_balance_lowers_the_output_limit(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "0.001")
    response = sdk(gateway, key).responses.create(model=PLAIN, input="hi")
    assert response.status == "completed"
    sent = openai_upstream.last_request.body["max_output_tokens"]
    price = gateway.state.catalog.current.resolve("openai", PLAIN).price
    assert 16 <= sent < price.max_output
    (row,) = gateway.requests()
    assert row.reserved <= 10**6


def test_an_alias_is_served_and_named_by_its_model(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    response = sdk(gateway, key).responses.create(model="gpt-4o", input="hi")
    assert response.model == MODEL
    assert openai_upstream.last_request.body["model"] == MODEL
    (row,) = gateway.requests()
    assert (row.requested_model, row.model) == ("gpt-4o", MODEL)


def test_a_stream_is_relayed_event_for_event_and_charged(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    body = {
        "model": MODEL,
        "input": "Say hello",
        "stream": True,
        "reasoning": {"summary": "auto"},
        "max_output_tokens": 1000,
    }
    direct = httpx.post(
        f"{openai_upstream.base_url}/responses",
        headers={"Authorization": f"Bearer {UPSTREAM_KEY}"},
        json=body,
    )
    with httpx.stream(
        "POST", f"{gateway.url}/ai/openai/responses", headers={"X-API-Key": key}, json=body
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        relayed = r.read().decode()
    theirs, ours = direct.text.split("\n\n"), relayed.split("\n\n")
    assert len(ours) == len(theirs) > 10
    ids = ("resp_", "msg_", "rs_")

    def masked(text: str) -> str:  # the fake numbers its ids per answer
        return json.dumps(_without_ids(json.loads(text.split("data: ", 1)[1]), ids))

    for mine, upstream in zip(ours[:-2], theirs[:-2], strict=True):
        assert mine.split("\n")[0] == upstream.split("\n")[0]  # the event line
        assert masked(mine) == masked(upstream)
    assert "[DONE]" not in relayed
    assert relayed.endswith("\n\n")
    final = json.loads(ours[-2].split("data: ", 1)[1])
    assert final["type"] == "response.completed"
    usage = final["response"]["usage"]
    (row,) = gateway.requests()
    assert (row.status, row.stream, row.surface) == ("ok", True, "responses")
    assert (row.prompt_tokens, row.completion_tokens) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert usage["output_tokens_details"]["reasoning_tokens"] > 0
    assert row.usage_estimated is False
    assert usage["cost"] == pytest.approx(row.cost / 1e9)
    assert row.cost > 0


def _without_ids(value: Any, prefixes: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _without_ids(v, prefixes) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_ids(v, prefixes) for v in value]
    if isinstance(value, str) and value.startswith(prefixes):
        return "id"
    return value


def test_the_sdk_stream_and_its_helper(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    client = sdk(gateway, key)
    events = list(client.responses.create(model=PLAIN, input="Say hello", stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    with client.responses.stream(model=PLAIN, input="Say hello") as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == final.output_text == "Hello from openai!"
    assert final.usage is not None
    rows = gateway.requests()
    assert len(rows) == 2
    assert rows[0].cost == rows[1].cost == charge_of(gateway, PLAIN, final.usage)


def test_a_function_tool_round_trip(gateway: Gateway, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.enqueue(Answer(tool_calls=(ToolCall("get_weather", '{"city": "Paris"}'),)))
    key = gateway.create_user("alice", "10")
    client = sdk(gateway, key)
    ask: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.responses.create(model=PLAIN, input=ask, tools=[WEATHER], store=False)
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    follow: Any = [
        *ask,
        {"type": "function_call", "call_id": call.call_id, "name": call.name,
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},
    ]  # fmt: skip
    second = client.responses.create(model=PLAIN, input=follow, tools=[WEATHER], store=False)
    assert second.output_text == "Hello from openai!"
    assert openai_upstream.last_request.body["input"] == follow
    rows = sorted(gateway.requests(), key=lambda r: r.prompt_tokens)
    assert len(rows) == 2
    for row, response in zip(rows, (first, second), strict=True):
        assert response.usage is not None
        assert row.prompt_tokens == response.usage.input_tokens
        assert row.cost == charge_of(gateway, PLAIN, response.usage) > 0


def test_a_follow_up_by_previous_response_id_is_bounded_by_the_stored_usage(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.enqueue(Answer(tool_calls=(ToolCall("get_weather", '{"city": "Paris"}'),)))
    key = gateway.create_user("alice", "10")
    client = sdk(gateway, key)
    first = client.responses.create(
        model=PLAIN, input="What is the weather in Paris? " * 400, tools=[WEATHER]
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    second = client.responses.create(
        model=PLAIN,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}],
        tools=[WEATHER],
        max_output_tokens=100,
    )
    assert second.previous_response_id == first.id
    seen = [(r.method, r.path) for r in openai_upstream.requests]
    assert seen == [
        ("POST", "/v1/responses"),
        ("GET", f"/v1/responses/{first.id}"),
        ("POST", "/v1/responses"),
    ]
    assert openai_upstream.requests[2].body["previous_response_id"] == first.id
    assert first.usage is not None and second.usage is not None
    # the earlier conversation is billed as input: the charge, and what was reserved for it
    assert second.usage.input_tokens > first.usage.input_tokens
    row = next(r for r in gateway.requests() if r.prompt_tokens == second.usage.input_tokens)
    assert row.cost == charge_of(gateway, PLAIN, second.usage)
    price = gateway.state.catalog.current.resolve("openai", PLAIN).price
    assert row.reserved >= cost(
        Usage(input_tokens=first.usage.total_tokens, output_tokens=100), price
    )


def test_an_unknown_previous_response_is_400_free_and_not_sent(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    client = sdk(gateway, key)
    unstored = client.responses.create(model=PLAIN, input="hi", store=False)
    openai_upstream.reset()
    before = gateway.balance("alice")
    for previous in ("resp_missing", unstored.id):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model=PLAIN, input="hi", previous_response_id=previous)
        assert caught.value.code == "previous_response_not_found"
    # an id never made for this user is not looked for; the unstored one is, and not found
    assert [(r.method, r.path) for r in openai_upstream.requests] == [
        ("GET", f"/v1/responses/{unstored.id}")
    ]
    refused = gateway.requests(status="error")
    assert [(row.http_status, row.cost) for row in refused] == [(400, 0), (400, 0)]
    assert gateway.balance("alice") == before


def test_a_stored_response_is_retrieved_free(gateway: Gateway, openai_upstream: FakeOpenAI) -> None:
    key = gateway.create_user("alice", "10")
    client = sdk(gateway, key)
    created = client.responses.create(model=PLAIN, input="Say hello")
    before = gateway.balance("alice")
    again = client.responses.retrieve(created.id)
    assert (again.id, again.output_text) == (created.id, "Hello from openai!")
    assert openai_upstream.last_request.path == f"/v1/responses/{created.id}"
    assert gateway.balance("alice") == before
    assert len(gateway.requests()) == 1
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_unknown")


BAD = [
    ({"input": "hi"}, "model"),
    ({"model": PLAIN}, "input"),
    ({"model": PLAIN, "input": 5}, "input"),
    ({"model": PLAIN, "input": ["hi"]}, "input[0]"),
    ({"model": PLAIN, "input": "hi", "max_output_tokens": 8}, "max_output_tokens"),
    ({"model": PLAIN, "input": "hi", "max_output_tokens": "many"}, "max_output_tokens"),
    ({"model": PLAIN, "input": "hi", "stream": "yes"}, "stream"),
    ({"model": PLAIN, "input": "hi", "background": True}, "background"),
    ({"model": PLAIN, "input": "hi", "previous_response_id": "../x"}, "previous_response_id"),
]


@pytest.mark.parametrize(("body", "param"), BAD)
def test_bad_input_is_400_free_and_never_sent(
    gateway: Gateway, openai_upstream: FakeOpenAI, body: dict[str, object], param: str
) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.post(f"{gateway.url}/ai/openai/responses", headers={"X-API-Key": key}, json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param
    assert openai_upstream.requests == []
    (row,) = gateway.requests()
    assert (row.status, row.http_status, row.cost) == ("error", 400, 0)
    assert gateway.balance("alice") == (10 * 10**9, 0)


def test_an_unaffordable_request_is_402_and_never_sent(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "0.000000001")
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway, key).responses.create(model=PLAIN, input="hello " * 500)
    assert caught.value.status_code == 402
    assert openai_upstream.requests == []


def test_an_upstream_error_is_free(gateway: Gateway, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.enqueue(ErrorReply(400, message="Invalid input"))
    key = gateway.create_user("alice", "10")
    with pytest.raises(openai.BadRequestError):
        sdk(gateway, key).responses.create(model=PLAIN, input="hi")
    (row,) = gateway.requests()
    assert (row.status, row.cost) == ("error", 0)


def test_an_error_in_the_stream_is_an_error_event_and_free(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.enqueue(Answer(text="one two three four", error_after=2))
    key = gateway.create_user("alice", "10")
    with httpx.stream(
        "POST",
        f"{gateway.url}/ai/openai/responses",
        headers={"X-API-Key": key},
        json={"model": PLAIN, "input": "hi", "stream": True},
    ) as r:
        text = r.read().decode()
    last = text.strip().split("\n\n")[-1]
    assert last.startswith("event: error\ndata: ")
    error = json.loads(last.split("data: ", 1)[1])
    assert error["type"] == "error" and error["message"]
    sequence = [json.loads(f.split("data: ", 1)[1])["sequence_number"] for f in text.split("\n\n")
                if "data: " in f]  # fmt: skip
    assert sequence == list(range(len(sequence)))
    (row,) = gateway.requests()
    assert (row.status, row.cost) == ("error", 0)


async def _send(
    gw: Gateway, key: str, request: dict[str, Any]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a streaming request over a raw socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    payload = orjson.dumps(request)
    head = (
        f"POST /ai/openai/responses HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await writer.drain()
    return reader, writer


async def _read_until(reader: asyncio.StreamReader, stop: bytes, seconds: float) -> bytes:
    """What arrives until `stop` did, the stream ended, or `seconds` passed."""
    received = b""
    try:
        async with asyncio.timeout(seconds):
            while stop not in received:
                piece = await reader.read(65536)
                if not piece:
                    break
                received += piece
    except TimeoutError:
        pass
    return received


async def _stream_until(gw: Gateway, key: str, request: dict[str, Any], stop: bytes) -> bytes:
    """Send a streaming request; close the connection once `stop` arrived."""
    reader, writer = await _send(gw, key, request)
    try:
        return await _read_until(reader, stop, 10)
    finally:
        writer.close()


def test_a_client_that_leaves_mid_stream_is_charged_once_for_what_was_delivered(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    assert tokens.load()
    openai_upstream.enqueue(Answer(text="one two three four five six", chunk_delay=0.3))
    key = gateway.create_user("alice", "10")
    before = gateway.balance("alice")[0]
    request = {"model": PLAIN, "input": "Tell me a story about the sea", "stream": True}
    received = asyncio.run(_stream_until(gateway, key, request, b'"delta":" two"'))
    assert b"response.completed" not in received
    wait_settled(gateway)
    (row,) = gateway.requests()
    assert (row.status, row.http_status) == ("cancelled", 499)
    assert row.usage_estimated is True
    assert 2 <= row.completion_tokens <= 4  # "one two", perhaps " three" on its way
    text_tokens = tokens.count_tokens("Tell me a story about the sea")
    assert text_tokens < row.prompt_tokens <= text_tokens + 8
    assert row.cost > 0
    assert gateway.balance("alice") == (before - row.cost, 0)
    assert gateway.reconcile() == []


def test_a_client_that_leaves_before_the_final_event_is_charged_its_output(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.enqueue(Answer(text="one two three", done_delay=1))
    key = gateway.create_user("alice", "10")
    request = {"model": PLAIN, "input": "Count", "stream": True}
    received = asyncio.run(_stream_until(gateway, key, request, b"response.output_item.done"))
    assert b"response.completed" not in received
    wait_settled(gateway)
    (row,) = gateway.requests()
    assert (row.status, row.completion_tokens) == ("cancelled", 3)
    assert row.cost > 0


def test_an_idempotent_stream_is_replayed_uncharged(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    headers = {"X-API-Key": key, "Idempotency-Key": "resp-1"}
    body = {"model": PLAIN, "input": "Say hello", "stream": True}
    url = f"{gateway.url}/ai/openai/responses"
    first = httpx.post(url, headers=headers, json=body)
    again = httpx.post(url, headers=headers, json=body)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.text == first.text
    assert "response.completed" in again.text
    assert len(gateway.requests()) == 1


def test_a_response_is_read_and_continued_only_by_its_user(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    alice = sdk(gateway, gateway.create_user("alice", "10"))
    bob = sdk(gateway, gateway.create_user("bob", "10"))
    streamed = list(alice.responses.create(model=PLAIN, input="Say hello", stream=True))
    created = alice.responses.create(model=PLAIN, input="Say hello")
    for response_id in (streamed[0].response.id, created.id):  # type: ignore[union-attr]
        assert alice.responses.retrieve(response_id).id == response_id
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(response_id)
        with pytest.raises(openai.BadRequestError) as caught:
            bob.responses.create(model=PLAIN, input="And?", previous_response_id=response_id)
        assert caught.value.code == "previous_response_not_found"
        follow = alice.responses.create(model=PLAIN, input="And?", previous_response_id=response_id)
        assert follow.previous_response_id == response_id
    sent = [(r.method, r.path) for r in openai_upstream.requests]
    assert sent.count(("POST", "/v1/responses")) == 4  # bob's never left the gateway
    assert sent.count(("GET", f"/v1/responses/{created.id}")) == 2  # alice's read and bound


def test_the_final_event_waits_for_the_committed_charge(
    gateway: Gateway, openai_upstream: FakeOpenAI, db_url: str
) -> None:
    if not db_url.startswith("sqlite:///"):
        pytest.skip("holds SQLite's write lock to hold the settlement")
    openai_upstream.enqueue(Answer(text="one two three", done_delay=0.3))
    key = gateway.create_user("alice", "10")
    request = {"model": PLAIN, "input": "Count", "stream": True}

    async def scenario() -> None:
        reader, writer = await _send(gateway, key, request)
        try:
            received = await _read_until(reader, b"response.output_item.done", 10)
            lock = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")  # the settlement cannot commit meanwhile
            try:
                # the upstream's final event arrives within 0.3 s: not sent while uncharged
                received += await _read_until(reader, b"response.completed", 1.5)
                assert b"response.completed" not in received
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            received += await _read_until(reader, b"response.completed", 10)
            assert b"response.completed" in received
        finally:
            writer.close()

    asyncio.run(scenario())
    (row,) = gateway.requests()
    assert (row.status, row.completion_tokens) == ("ok", 3)


def test_a_stream_left_during_a_tool_call_is_charged_its_arguments(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    assert tokens.load()
    arguments = '{"city": "Paris, France, Europe, Earth"}'
    openai_upstream.enqueue(
        Answer(tool_calls=(ToolCall("get_weather", arguments),), chunk_delay=0.3)
    )
    key = gateway.create_user("alice", "10")
    request = {"model": PLAIN, "input": "Weather?", "stream": True, "tools": [WEATHER]}
    received = asyncio.run(_stream_until(gateway, key, request, b"Paris, Fr"))
    assert b"response.completed" not in received
    wait_settled(gateway)
    (row,) = gateway.requests()
    assert (row.status, row.usage_estimated) == ("cancelled", True)
    assert row.completion_tokens >= tokens.count_tokens('{"city": "Paris, Fr')
