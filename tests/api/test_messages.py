"""The Anthropic Messages surface end to end: the official `anthropic` SDK -> gateway ->
the Anthropic fake, and back; charged the fake's reported usage at the catalog price."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from ai_service.billing.pricing import Price, cost
from ai_service.providers.base import Usage
from tests.billing.test_images import png
from tests.fakes.anthropic_messages import TOOL_PROMPT_AUTO, FakeAnthropic
from tests.fakes.behaviours import Answer, ErrorReply, ToolCall, Usage as FakeUsage
from tests.fakes.tokens import PER_MESSAGE, count_words
from tests.support.gateway import Gateway

KEY = "sk-ant-upstream-test"
ADMIN_KEY = "messages-admin-key-0123456789abcdef"
MODEL = "claude-3-5-sonnet-20241022"
HELLO = [{"role": "user", "content": "Hello there"}]
HELLO_TOKENS = PER_MESSAGE + count_words("Hello there")  # what the fake reports
WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def claude(gateway_factory: Callable[..., Gateway], anthropic_fake: FakeAnthropic) -> Gateway:
    anthropic_fake.reset()
    return gateway_factory(anthropic_api_key=KEY, anthropic_base_url=anthropic_fake.base_url)


def sdk(gw: Gateway, key: str, *, bearer: bool = False) -> anthropic.Anthropic:
    base = gw.url + "/ai/claude"
    if bearer:
        return anthropic.Anthropic(base_url=base, auth_token=key, max_retries=0)
    return anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)


def price(gw: Gateway) -> Price:
    return gw.state.catalog.current.resolve("claude", MODEL).price


def charged(gw: Gateway, name: str, before: int) -> int:
    return before - gw.balance(name)[0]


def test_create_is_charged_its_usage_and_sent_with_the_gateway_key(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")[0]
    client = sdk(claude, key)
    message = client.messages.create(model=MODEL, max_tokens=256, messages=HELLO)
    assert message.content[0].type == "text"
    message_text = "Hello from anthropic!"
    assert message.content[0].text == message_text
    assert message.stop_reason == "end_turn"
    (seen,) = anthropic_fake.requests
    assert seen.path == "/v1/messages"
    assert seen.body == {"model": MODEL, "max_tokens": 256, "messages": HELLO}
    assert seen.headers["x-api-key"] == KEY
    assert key not in str(seen.headers)
    # the client's own version is forwarded
    assert seen.headers["anthropic-version"] == client.default_headers["anthropic-version"]
    output = message.usage.output_tokens
    assert (message.usage.input_tokens, output) == (HELLO_TOKENS, count_words(message_text))
    usage = Usage(input_tokens=HELLO_TOKENS, output_tokens=output)
    expected = cost(usage, price(claude))
    assert charged(claude, "alice", before) == expected > 0
    (row,) = claude.requests()
    assert (row.provider, row.model, row.status, row.cost) == ("claude", MODEL, "ok", expected)
    assert row.surface == "messages"
    assert (row.prompt_tokens, row.completion_tokens) == (HELLO_TOKENS, output)


def test_the_body_bytes_reach_anthropic_unchanged(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    raw = (
        b'{ "messages" : [ {"role":"user","content":"Hello there"} ],\n'
        b'  "max_tokens": 64, "model": "' + MODEL.encode() + b'", "temperature": 0.5 }'
    )
    r = httpx.post(
        claude.url + "/ai/claude/v1/messages",
        content=raw,
        headers={"x-api-key": key, "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "message"
    assert r.headers["x-request-cost"]
    (seen,) = anthropic_fake.requests
    assert seen.raw == raw
    assert seen.headers["anthropic-version"] == "2023-06-01"  # the default, none was sent
    assert "anthropic-beta" not in seen.headers


def test_an_alias_is_sent_as_its_model_and_only_the_model_changes(
    gateway_factory: Callable[..., Gateway], anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.reset()
    gw = gateway_factory(
        anthropic_api_key=KEY, anthropic_base_url=anthropic_fake.base_url, admin_key=ADMIN_KEY
    )
    r = httpx.put(
        gw.url + "/ai/admin/api/aliases",
        json={"provider": "claude", "alias": "sonnet", "target": MODEL},
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    assert r.status_code == 200, r.text
    key = gw.create_user("alice", "10")
    body = {"model": "sonnet", "max_tokens": 64, "messages": HELLO, "stop_sequences": ["END"]}
    sdk(gw, key).messages.create(**body)  # type: ignore[arg-type]  # the SDK's TypedDicts
    (seen,) = anthropic_fake.requests
    assert seen.body == {**body, "model": MODEL}
    (row,) = gw.requests()
    assert (row.requested_model, row.model) == ("sonnet", MODEL)


def test_a_lower_limit_the_balance_pays_for_is_the_one_field_changed(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("bob", "0.02")  # pays for about a thousand output tokens
    body = {"model": MODEL, "max_tokens": 8000, "messages": HELLO, "stop_sequences": ["END"]}
    sdk(claude, key).messages.create(**body)  # type: ignore[arg-type]  # the SDK's TypedDicts
    (seen,) = anthropic_fake.requests
    sent = dict(seen.body)
    limit = sent.pop("max_tokens")
    assert 16 <= limit < 8000
    assert sent == {k: v for k, v in body.items() if k != "max_tokens"}


def test_stream_with_a_tool_and_1h_cache_writes_is_relayed_and_charged_by_ttl(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")[0]
    reported = FakeUsage(
        prompt_tokens=50,
        cached_tokens=2000,
        cache_creation_tokens=300,
        cache_1h_tokens=200,
        completion_tokens=40,
    )
    call = ToolCall(name="get_weather", arguments='{"city": "Paris"}')
    anthropic_fake.enqueue(Answer(tool_calls=(call,), usage=reported))
    system = [
        {
            "type": "text",
            "text": "You forecast weather. " * 20,
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    betas = "extended-cache-ttl-2025-04-11,context-1m-2025-08-07"
    with sdk(claude, key).messages.stream(
        model=MODEL,
        max_tokens=512,
        system=system,  # type: ignore[arg-type]  # the SDK's TypedDict union
        tools=[WEATHER],  # type: ignore[list-item]  # idem
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        extra_headers={"anthropic-beta": betas},
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
        dropped = stream.response.headers["x-dropped-anthropic-beta"]
    (tool,) = final.content
    assert tool.type == "tool_use"
    assert (tool.name, tool.input) == ("get_weather", {"city": "Paris"})
    assert final.stop_reason == "tool_use"
    assert final.usage.cache_creation is not None
    assert final.usage.cache_creation.ephemeral_1h_input_tokens == 200
    assert "message_start" in events and "message_stop" in events
    assert "input_json" in events  # the SDK read the tool's streamed input
    (seen,) = anthropic_fake.requests
    assert seen.headers["anthropic-beta"] == "extended-cache-ttl-2025-04-11"
    assert dropped == "context-1m-2025-08-07"
    assert seen.body["system"] == system
    assert seen.body["stream"] is True
    claude.wait_settled()
    expected = cost(
        Usage(
            input_tokens=50,
            cache_read_tokens=2000,
            cache_write_tokens=300,
            cache_write_1h_tokens=200,
            output_tokens=40,
        ),
        price(claude),
    )
    # a 1h write is dearer than a 5m one: the split is what is charged
    assert expected > cost(
        Usage(input_tokens=50, cache_read_tokens=2000, cache_write_tokens=300, output_tokens=40),
        price(claude),
    )
    assert charged(claude, "alice", before) == expected
    (row,) = claude.requests()
    assert (row.status, row.cost, row.usage_estimated) == ("ok", expected, False)
    assert (row.cached_tokens, row.cache_write_tokens) == (2000, 300)


def test_stream_bytes_are_anthropic_events_one_for_one(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    body = {"model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": True}
    with httpx.stream(
        "POST", claude.url + "/ai/claude/v1/messages", json=body, headers={"x-api-key": key}
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        received = r.read()
    frames = received.split(b"\n\n")
    assert frames.pop() == b""
    names = []
    for frame in frames:
        head, data = frame.split(b"\n")
        name = head.removeprefix(b"event: ").decode()
        assert orjson.loads(data.removeprefix(b"data: "))["type"] == name
        names.append(name)
    deltas = ["content_block_delta"] * names.count("content_block_delta")
    assert len(deltas) >= 2
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert b"[DONE]" not in received


def test_tools_add_the_hidden_system_prompt_to_the_reservation(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    message = sdk(claude, key).messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[WEATHER],  # type: ignore[list-item]  # the SDK's TypedDict union
        messages=HELLO,  # type: ignore[arg-type]  # idem
    )
    # the fake bills the tool prompt as Anthropic does; the bound covered it
    assert message.usage.input_tokens == HELLO_TOKENS + TOOL_PROMPT_AUTO
    (row,) = claude.requests()
    assert row.prompt_tokens == HELLO_TOKENS + TOOL_PROMPT_AUTO


def test_an_image_is_reserved_by_its_formula_not_its_bytes(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    # 530k base64 characters would bound 530k tokens ($1.59 at $3/M): more than the balance
    key = claude.create_user("alice", "0.5")
    picture = base64.b64encode(png(800, 600, padding=400_000)).decode()
    image = {"type": "base64", "media_type": "image/png", "data": picture}
    content = [{"type": "image", "source": image}, {"type": "text", "text": "What is this?"}]
    message = sdk(claude, key).messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": content}],  # type: ignore[list-item]  # TypedDicts
    )
    assert message.type == "message"
    (seen,) = anthropic_fake.requests
    assert seen.body["messages"][0]["content"][0]["source"]["data"] == picture


def test_count_tokens_is_forwarded_and_free(claude: Gateway, anthropic_fake: FakeAnthropic) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")
    counted = sdk(claude, key).messages.count_tokens(
        model=MODEL,
        messages=HELLO,  # type: ignore[arg-type]  # the SDK's TypedDict union
        tools=[WEATHER],  # type: ignore[list-item]  # idem
    )
    assert counted.input_tokens == HELLO_TOKENS + TOOL_PROMPT_AUTO
    (seen,) = anthropic_fake.requests
    assert seen.path == "/v1/messages/count_tokens"
    assert seen.headers["x-api-key"] == KEY
    assert seen.body == {"model": MODEL, "messages": HELLO, "tools": [WEATHER]}
    assert claude.balance("alice") == before
    assert claude.requests() == []


def test_count_tokens_needs_a_valid_key(claude: Gateway, anthropic_fake: FakeAnthropic) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        sdk(claude, "sk-wrong").messages.count_tokens(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == 401
    assert anthropic_fake.requests == []


def anthropic_error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    return body["error"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "messages": HELLO}, "max_tokens"),
        ({"max_tokens": 10, "messages": HELLO}, "model"),
        ({"model": MODEL, "max_tokens": 10, "messages": []}, "messages"),
        ({"model": MODEL, "max_tokens": 0, "messages": HELLO}, "max_tokens"),
        (
            {
                "model": MODEL,
                "max_tokens": 10,
                "messages": HELLO,
                "tools": [{"type": "code_execution_20250825", "name": "code_execution"}],
            },
            "tools",
        ),
    ],
)
def test_an_invalid_body_is_400_in_anthropic_shape_free_and_never_sent(
    claude: Gateway, anthropic_fake: FakeAnthropic, body: dict[str, Any], param: str
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")
    r = httpx.post(claude.url + "/ai/claude/v1/messages", json=body, headers={"x-api-key": key})
    assert r.status_code == 400
    error = anthropic_error(r)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(param)
    assert anthropic_fake.requests == []
    assert claude.balance("alice") == before
    (row,) = claude.requests()
    assert (row.status, row.http_status, row.cost, row.surface) == ("error", 400, 0, "messages")


def test_the_sdk_reads_the_gateway_refusals(claude: Gateway, anthropic_fake: FakeAnthropic) -> None:
    key = claude.create_user("alice", "10")
    with pytest.raises(anthropic.BadRequestError) as bad:
        sdk(claude, key).messages.create(
            model=MODEL, max_tokens=10, messages=HELLO, extra_body={"stream": "yes"}
        )
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError) as denied:
        sdk(claude, "sk-not-a-key").messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert denied.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert anthropic_fake.requests == []


def test_an_unaffordable_request_is_402_billing_error_and_never_sent(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("poor", "0")
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk(claude, key).messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    assert caught.value.status_code == 402
    assert caught.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert "Insufficient balance" in caught.value.body["error"]["message"]  # type: ignore[index]
    assert anthropic_fake.requests == []
    (row,) = claude.requests()
    assert (row.status, row.http_status, row.cost) == ("error", 402, 0)


def test_rate_limited_is_429_rate_limit_error_and_counts_count_tokens(
    gateway_factory: Callable[..., Gateway], anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.reset()
    gw = gateway_factory(
        anthropic_api_key=KEY, anthropic_base_url=anthropic_fake.base_url, default_rpm=1
    )
    key = gw.create_user("alice", "10")
    sdk(gw, key).messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk(gw, key).messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError):  # a free count still counts as a request
        sdk(gw, key).messages.count_tokens(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    assert len(anthropic_fake.requests) == 1


def test_a_body_over_the_limit_is_413_request_too_large(
    gateway_factory: Callable[..., Gateway], anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.reset()
    gw = gateway_factory(
        anthropic_api_key=KEY, anthropic_base_url=anthropic_fake.base_url, max_body_bytes=1000
    )
    key = gw.create_user("alice", "10")
    long = [{"role": "user", "content": "word " * 400}]
    r = httpx.post(
        gw.url + "/ai/claude/v1/messages",
        json={"model": MODEL, "max_tokens": 10, "messages": long},
        headers={"x-api-key": key},
    )
    assert r.status_code == 413
    assert anthropic_error(r)["type"] == "request_too_large"
    assert anthropic_fake.requests == []
    (row,) = gw.requests()
    assert (row.surface, row.http_status, row.cost) == ("messages", 413, 0)


def test_an_upstream_refusal_is_passed_on_in_anthropic_shape_and_free(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")
    anthropic_fake.enqueue(ErrorReply(400, message="messages: too many images"))
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(claude, key).messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert "too many images" in caught.value.body["error"]["message"]  # type: ignore[index]
    assert claude.balance("alice") == before


@pytest.mark.parametrize("bearer", [False, True])
def test_the_key_works_as_x_api_key_and_as_bearer(
    claude: Gateway, anthropic_fake: FakeAnthropic, bearer: bool
) -> None:
    key = claude.create_user("alice", "10")
    message = sdk(claude, key, bearer=bearer).messages.create(
        model=MODEL, max_tokens=10, messages=HELLO
    )
    assert message.type == "message"
    (seen,) = anthropic_fake.requests
    assert seen.headers["x-api-key"] == KEY
    assert key not in seen.headers.get("authorization", "")


def test_an_idempotent_retry_is_replayed_and_charged_once(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")[0]
    headers = {"Idempotency-Key": "retry-1"}
    client = sdk(claude, key)
    first = client.messages.create(
        model=MODEL, max_tokens=10, messages=HELLO, extra_headers=headers
    )
    again = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=10, messages=HELLO, extra_headers=headers
    )
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse().id == first.id
    assert len(anthropic_fake.requests) == 1
    (row,) = claude.requests()
    assert charged(claude, "alice", before) == row.cost > 0


async def leave_after(gw: Gateway, key: str, body: dict[str, Any], mark: bytes) -> bytes:
    """Stream `body`, read until `mark` arrived, then close the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    payload = orjson.dumps(body)
    head = (
        "POST /ai/claude/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
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


def wait_settled(gw: Gateway, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while gw.scalar("SELECT count(*) FROM api_requests WHERE status = 'pending'"):
        assert time.monotonic() < deadline, "requests still pending"
        time.sleep(0.02)


def test_a_client_that_leaves_mid_stream_pays_the_early_usage_once(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")[0]
    anthropic_fake.enqueue(
        Answer(text="one two three four", first_delay=1, usage=FakeUsage(cached_tokens=500))
    )
    body = {"model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": True}
    received = asyncio.run(leave_after(claude, key, body, b"event: message_start"))
    assert b"text_delta" not in received
    wait_settled(claude)
    (row,) = claude.requests()
    assert (row.status, row.http_status) == ("cancelled", 499)
    # message_start reported the prompt, its cache reads and 1 output token so far
    assert (row.prompt_tokens, row.cached_tokens, row.completion_tokens) == (
        HELLO_TOKENS + 500,
        500,
        1,
    )
    expected = cost(
        Usage(input_tokens=HELLO_TOKENS, cache_read_tokens=500, output_tokens=1), price(claude)
    )
    assert row.cost == expected > 0
    assert row.usage_estimated is False
    assert charged(claude, "alice", before) == expected
    assert claude.reconcile() == []


def test_a_stream_cut_upstream_ends_with_an_error_event_and_is_logged_free(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")
    text = "alpha beta gamma delta epsilon zeta eta theta"
    anthropic_fake.enqueue(Answer(text=text, cut_after=3))
    body = {"model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": True}
    with httpx.stream(
        "POST", claude.url + "/ai/claude/v1/messages", json=body, headers={"x-api-key": key}
    ) as r:
        received = r.read()
    last = received.rstrip(b"\n").split(b"\n\n")[-1]
    head, data = last.split(b"\n")
    assert head == b"event: error"
    error = orjson.loads(data.removeprefix(b"data: "))
    assert error["type"] == "error"
    assert error["error"]["type"] == "api_error"
    wait_settled(claude)
    (row,) = claude.requests()
    assert (row.status, row.http_status) == ("error", 502)
    assert row.prompt_tokens == HELLO_TOKENS
    assert row.completion_tokens >= 3  # the three deltas delivered, estimated from their text
    # a stream the upstream cut is an upstream error: logged with what it used, free
    assert (row.cost, row.usage_estimated) == (0, False)
    assert claude.balance("alice") == before


def test_an_upstream_error_event_reaches_the_sdk_as_an_anthropic_error(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")
    anthropic_fake.enqueue(Answer(text="one two three four five", error_after=2))
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        sdk(claude, key).messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream,
    ):
        received.extend(stream.text_stream)
    assert received  # the text before the error was relayed
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"  # the overloaded upstream: the gateway's 503
    wait_settled(claude)
    (row,) = claude.requests()
    assert (row.status, row.cost) == ("error", 0)
    assert claude.balance("alice") == before


def test_the_sdk_lists_and_retrieves_claude_models(claude: Gateway) -> None:
    key = claude.create_user("alice", "10")
    client = sdk(claude, key)
    listed = [m.id for m in client.models.list()]
    assert "claude-sonnet-4-5-20250929" in listed
    assert listed == sorted(listed)
    model = client.models.retrieve("claude-sonnet-4-5-20250929")
    assert (model.id, model.type) == ("claude-sonnet-4-5-20250929", "model")
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.models.retrieve("claude-nonexistent-9")
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    r = httpx.get(claude.url + "/ai/claude/v1/models", headers={"x-api-key": "ais-wrong"})
    assert r.status_code == 401
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "authentication_error"


def test_an_endpoint_not_served_on_the_claude_path_names_its_own(claude: Gateway) -> None:
    key = claude.create_user("alice", "10")
    r = httpx.post(claude.url + "/ai/claude/v1/complete", headers={"x-api-key": key}, json={})
    assert r.status_code == 404
    message = r.json()["error"]["message"]
    assert "v1/messages" in message and "chat/completions" in message
    assert "embeddings" not in message  # not Claude's
    assert "responses" in message  # translated to Claude's chat
