"""The OpenAI path end to end: official SDK and raw HTTP against a real gateway and fake upstream."""

from __future__ import annotations

import time

import httpx
import openai
import orjson
import pytest

from ai_service.billing.money import price_to_micro
from ai_service.billing.pricing import Price, cost
from ai_service.providers.base import Usage
from tests.conftest import UPSTREAM_KEY
from tests.fakes.behaviours import Answer, ToolCall, Usage as FakeUsage
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

MINI = Price(
    input=price_to_micro("0.75"),
    output=price_to_micro("4.50"),
    cached_input=price_to_micro("0.075"),
)


def sdk(gateway: Gateway, key: str, path: str = "openai") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/ai/{path}", api_key=key, max_retries=0)


def sse_events(body: str) -> list[str]:
    return [line[len("data: ") :] for line in body.split("\n\n") if line.startswith("data: ")]


def test_non_streaming_answer_is_logged_and_charged_exactly(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    before = gateway.balance("alice")[0]
    answer = sdk(gateway, key).chat.completions.create(
        model="gpt-5.4-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello to the world"},
        ],
    )
    assert answer.choices[0].message.content == "Hello from openai!"
    assert answer.model == "gpt-5.4-mini"
    assert answer.usage is not None
    (row,) = gateway.requests()
    assert (row.status, row.http_status, row.provider) == ("ok", 200, "openai")
    assert row.prompt_tokens == answer.usage.prompt_tokens
    assert row.completion_tokens == answer.usage.completion_tokens
    expected = cost(
        Usage(input_tokens=row.prompt_tokens, output_tokens=row.completion_tokens), MINI
    )
    assert row.cost == expected > 0
    assert gateway.balance("alice") == (before - expected, 0)
    assert gateway.reconcile() == []


def test_upstream_gets_its_own_key_and_an_output_limit_not_the_clients_key(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    sdk(gateway, key).chat.completions.create(
        model="gpt-5.4-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=50
    )
    (seen,) = openai_upstream.requests
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert key not in orjson.dumps(seen.headers).decode()
    assert seen.body["max_completion_tokens"] == 50
    assert "max_tokens" not in seen.body


def test_unknown_fields_are_forwarded_untouched(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    extra = {
        "response_format": {"type": "json_object"},
        "reasoning_effort": "low",
        "seed": 7,
        "metadata": {"team": "search"},
        "x_custom": [1, {"a": None}],
    }
    r = httpx.post(
        f"{gateway.url}/ai/openai/chat/completions",
        headers={"X-API-Key": key},
        json={"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}], **extra},
    )
    assert r.status_code == 200, r.text
    (seen,) = openai_upstream.requests
    for name, value in extra.items():
        assert seen.body[name] == value


def test_alias_resolves_and_both_names_are_logged(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    answer = sdk(gateway, key).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.model == "gpt-5.4-mini"
    assert openai_upstream.requests[0].body["model"] == "gpt-5.4-mini"
    (row,) = gateway.requests()
    assert (row.requested_model, row.model, row.default_price) == ("gpt-4o", "gpt-5.4-mini", False)


def test_unknown_model_is_refused_free_before_reaching_the_provider(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    before = gateway.balance("alice")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway, key).chat.completions.create(
            model="my-fine-tune-xyz", messages=[{"role": "user", "content": "hi"}]
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "model_not_found",
        "model",
    )
    assert "gpt-5.4-mini" in error["message"]  # names the provider's priced models
    assert openai_upstream.requests == []
    (row,) = gateway.requests()
    assert (row.status, row.http_status, row.cost) == ("error", 400, 0)
    assert gateway.balance("alice") == before


def test_legacy_v1_path_is_the_openai_path(gateway: Gateway, openai_upstream: FakeOpenAI) -> None:
    key = gateway.create_user("alice", "10")
    answer = sdk(gateway, key, "v1").chat.completions.create(
        model="gpt-5.4-nano", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "Hello from openai!"
    assert gateway.requests()[0].provider == "openai"
    models = sdk(gateway, key, "v1").models.list()
    assert "gpt-5.4-nano" in {m.id for m in models.data}


def test_bearer_key_is_accepted_and_request_id_is_echoed(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.post(
        f"{gateway.url}/ai/openai/chat/completions",
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": "trace-123"},
        json={"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200
    (row,) = gateway.requests()
    assert (r.headers["x-request-id"], row.client_request_id) == (row.request_id, "trace-123")
    assert r.headers["x-served-model"] == "gpt-5.4-mini"
    generated = httpx.get(f"{gateway.url}/healthz").headers["x-request-id"]
    assert generated.startswith("req_")


def test_stream_chunks_have_the_dual_shape_and_end_with_done(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.post(
        f"{gateway.url}/ai/openai/chat/completions",
        headers={"X-API-Key": key},
        json={
            "model": "gpt-5.4-mini",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(isinstance(c["content"], str) for c in chunks)
    assert "".join(c["content"] for c in chunks) == "Hello from openai!"
    assert all(c["model"] == "gpt-5.4-mini" for c in chunks)
    # usage was not asked for: no usage chunk, no usage field
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)
    # but the gateway asked the upstream for it, and billed from it
    assert openai_upstream.requests[0].body["stream_options"] == {"include_usage": True}
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert row.status == "ok" and row.usage_estimated is False and row.completion_tokens > 0


def test_stream_usage_chunk_only_when_asked(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    stream = sdk(gateway, key).chat.completions.create(
        model="gpt-5.4-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert row.completion_tokens == chunks[-1].usage.completion_tokens


def test_a_finished_stream_hands_its_upstream_connection_back(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    # the end of each body comes a moment after its last event, as it may from a provider
    openai_upstream.enqueue(*[Answer(text="one two three", end_delay=0.05)] * 3)
    for _ in range(3):
        r = httpx.post(
            gateway.url + "/ai/openai/chat/completions",
            headers={"X-API-Key": key},
            json={"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}],
                  "stream": True},
        )  # fmt: skip
        assert r.text.endswith("data: [DONE]\n\n")
        time.sleep(0.2)  # the body's end has arrived: the connection is back in the pool
    peers = [request.peer for request in openai_upstream.requests]
    assert len(peers) == 3 and peers[0] is not None
    assert len(set(peers)) == 1  # one kept-alive connection, not one per stream


def test_streamed_and_non_streamed_answers_cost_the_same(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    client = sdk(gateway, key)
    messages = [{"role": "user", "content": "the same prompt twice"}]
    client.chat.completions.create(model="gpt-5.4-mini", messages=messages)
    list(client.chat.completions.create(model="gpt-5.4-mini", messages=messages, stream=True))
    gateway.wait_settled()
    first, second = gateway.requests()
    assert (first.stream, second.stream) == (False, True)
    assert first.cost == second.cost > 0


def test_tool_calls_and_reasoning_pass_through(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    call = ToolCall(name="get_weather", arguments='{"city": "Paris"}')
    openai_upstream.enqueue(Answer(tool_calls=(call,), usage=FakeUsage(reasoning_tokens=5)))
    answer = sdk(gateway, key).chat.completions.create(
        model="gpt-5.4-mini",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    )
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    assert message.tool_calls[0].function.arguments == '{"city": "Paris"}'
    assert answer.usage is not None
    details = answer.usage.completion_tokens_details
    assert details is not None and details.reasoning_tokens == 5
    (row,) = gateway.requests()
    assert row.reasoning_tokens == 5

    openai_upstream.enqueue(Answer(tool_calls=(call,)))
    stream = sdk(gateway, key).chat.completions.create(
        model="gpt-5.4-mini", messages=[{"role": "user", "content": "weather?"}], stream=True
    )
    arguments = ""
    for chunk in stream:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            arguments += delta.function.arguments or "" if delta.function else ""
    assert arguments == '{"city": "Paris"}'


def test_cached_prompt_tokens_are_charged_at_the_cached_price(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    openai_upstream.enqueue(
        Answer(usage=FakeUsage(prompt_tokens=1000, cached_tokens=800, completion_tokens=10))
    )
    sdk(gateway, key).chat.completions.create(
        model="gpt-5.4-mini", messages=[{"role": "user", "content": "hi"}]
    )
    (row,) = gateway.requests()
    assert (row.prompt_tokens, row.cached_tokens, row.completion_tokens) == (1000, 800, 10)
    assert row.cost == cost(Usage(input_tokens=200, cache_read_tokens=800, output_tokens=10), MINI)


def test_payloads_are_stored_without_the_key(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.post(
        f"{gateway.url}/ai/openai/chat/completions",
        headers={"X-API-Key": key},
        json={"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": f"my key {key}"}]},
    )
    assert r.status_code == 200
    (row,) = gateway.requests()
    data = gateway.payload(row.request_id)
    assert data is not None and data.request_body and data.response_body
    assert key not in data.request_body
    assert "[redacted]" in data.request_body
    assert "Hello from openai!" in data.response_body


@pytest.mark.parametrize("path", ["openai", "v1"])
def test_models_list_carries_prices(gateway: Gateway, path: str) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.get(f"{gateway.url}/ai/{path}/models", headers={"X-API-Key": key})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    mini = next(m for m in body["data"] if m["id"] == "gpt-5.4-mini")
    assert mini["object"] == "model"
    assert mini["owned_by"] == "openai"
    assert mini["input_cost_per_million"] == 0.75
    assert mini["output_cost_per_million"] == 4.5
    assert mini["context_window"] > 0
