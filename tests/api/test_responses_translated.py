"""The Responses API on the paths of providers that only speak chat (Claude, Mistral,
Together, DeepSeek), translated to and from their chat API: with the official SDK,
against each provider's fake, each call charged the fake's reported usage at the
catalog price; what cannot be translated is refused free and never sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from ai_service.billing.money import usd_float
from ai_service.billing.pricing import cost
from ai_service.providers.base import Usage
from tests.conftest import UPSTREAM_KEY
from tests.fakes.anthropic_messages import FakeAnthropic
from tests.fakes.behaviours import Answer, ToolCall, Usage as FakeUsage
from tests.fakes.openai_flavours import FakeDeepSeek, FakeMistral, FakeTogether
from tests.fakes.server import FakeServer
from tests.support.gateway import Gateway

MODELS = {
    "claude": "claude-3-5-sonnet-20241022",
    "mistral": "mistral-small-latest",
    "llama": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "deepseek": "deepseek-chat",
}
PATHS = list(MODELS)
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


class Fakes:
    """One fake per provider path, over real sockets."""

    def __init__(self) -> None:
        self.claude = FakeAnthropic(api_key=UPSTREAM_KEY)
        self.mistral = FakeMistral(api_key=UPSTREAM_KEY)
        self.llama = FakeTogether(api_key=UPSTREAM_KEY)
        self.deepseek = FakeDeepSeek(api_key=UPSTREAM_KEY)

    def of(self, path: str) -> FakeServer:
        fake: FakeServer = getattr(self, path)
        return fake

    def all(self) -> list[FakeServer]:
        return [self.of(path) for path in PATHS]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    made = Fakes()
    for fake in made.all():
        fake.__enter__()
    yield made
    for fake in made.all():
        fake.__exit__(None, None, None)


@pytest.fixture
def gw(gateway_factory: Callable[..., Gateway], fakes: Fakes) -> Gateway:
    for fake in fakes.all():
        fake.reset()
    return gateway_factory(
        anthropic_api_key=UPSTREAM_KEY,
        anthropic_base_url=fakes.claude.base_url,
        mistral_api_key=UPSTREAM_KEY,
        mistral_base_url=fakes.mistral.base_url,
        together_api_key=UPSTREAM_KEY,
        together_base_url=fakes.llama.base_url,
        deepseek_api_key=UPSTREAM_KEY,
        deepseek_base_url=fakes.deepseek.base_url,
    )


def sdk(gw: Gateway, key: str, path: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/ai/{path}", api_key=key, max_retries=0)


def price_cost(gw: Gateway, path: str, usage: Usage) -> int:
    return cost(usage, gw.state.catalog.current.resolve(path, MODELS[path]).price)


def sent_messages(fake: FakeServer) -> list[dict[str, Any]]:
    """The conversation the provider received, as role and text (Anthropic's or chat's)."""
    body = fake.last_request.body
    assert isinstance(body, dict)
    out: list[dict[str, Any]] = []
    if isinstance(body.get("system"), str | list):
        system = body["system"]
        text = system if isinstance(system, str) else "".join(b["text"] for b in system)
        out.append({"role": "system", "content": text})
    out.extend(body["messages"])
    return out


@pytest.mark.parametrize("path", PATHS)
def test_a_response_is_translated_and_charged_the_reported_usage(
    gw: Gateway, fakes: Fakes, path: str
) -> None:
    fake = fakes.of(path)
    fake.enqueue(Answer(text="Bonjour", usage=FakeUsage(prompt_tokens=40, completion_tokens=7)))
    key = gw.create_user("alice", "10")
    before = gw.balance("alice")[0]
    response = sdk(gw, key, path).responses.create(
        model=MODELS[path], instructions="Be brief.", input="Say hello in French"
    )
    assert response.output_text == "Bonjour"
    assert response.status == "completed"
    assert response.model == MODELS[path]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (40, 7)
    charged = price_cost(gw, path, Usage(input_tokens=40, output_tokens=7))
    (row,) = gw.requests()
    assert (row.surface, row.status, row.provider, row.cost) == ("responses", "ok", path, charged)
    assert (row.prompt_tokens, row.completion_tokens) == (40, 7)
    assert response.usage.model_extra == {"cost": usd_float(charged)}
    assert gw.balance("alice") == (before - charged, 0)
    messages = sent_messages(fake)
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert "Say hello in French" in orjson.dumps(messages[-1]).decode()


@pytest.mark.parametrize("path", PATHS)
def test_a_stream_is_the_responses_event_sequence_and_charged(
    gw: Gateway, fakes: Fakes, path: str
) -> None:
    fake = fakes.of(path)
    fake.enqueue(
        Answer(text="one two three", usage=FakeUsage(prompt_tokens=12, completion_tokens=3))
    )
    key = gw.create_user("alice", "10")
    with sdk(gw, key, path).responses.stream(model=MODELS[path], input="Count") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == "one two three"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 3)
    charged = price_cost(gw, path, Usage(input_tokens=12, output_tokens=3))
    (row,) = gw.requests()
    assert (row.surface, row.stream, row.status, row.cost) == ("responses", True, "ok", charged)
    assert final.usage.model_extra == {"cost": usd_float(charged)}
    body = fake.last_request.body
    assert isinstance(body, dict) and body["stream"] is True


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True])
def test_a_function_tool_round_trip(gw: Gateway, fakes: Fakes, path: str, stream: bool) -> None:
    fake = fakes.of(path)
    fake.enqueue(Answer(tool_calls=(ToolCall("get_weather", '{"city": "Paris"}', "call_7"),)))
    fake.enqueue(Answer(text="Sunny in Paris."))
    key = gw.create_user("alice", "10")
    client = sdk(gw, key, path)
    question: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.responses.stream(model=MODELS[path], input=question, tools=[WEATHER]) as events:
            kinds = [e.type for e in events]
            first = events.get_final_response()
        assert "response.function_call_arguments.delta" in kinds
        assert "response.function_call_arguments.done" in kinds
    else:
        first = client.responses.create(model=MODELS[path], input=question, tools=[WEATHER])
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert (call.name, orjson.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    sent_tools = orjson.dumps(fake.last_request.body).decode()
    assert "get_weather" in sent_tools and "Weather of a city" in sent_tools
    second = client.responses.create(
        model=MODELS[path],
        input=[
            *question,
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24C"},
        ],
        tools=[WEATHER],
    )
    assert second.output_text == "Sunny in Paris."
    conversation = orjson.dumps(sent_messages(fake)).decode()
    # the call and its output, paired (under the id the provider takes: Mistral's are its own)
    assert "get_weather" in conversation and "sunny, 24C" in conversation
    rows = gw.requests()
    assert [r.status for r in rows] == ["ok", "ok"]
    assert all(r.cost > 0 for r in rows)


def test_reasoning_becomes_a_reasoning_item(gw: Gateway, fakes: Fakes) -> None:
    fakes.deepseek.enqueue(Answer(reasoning="Six times seven.", text="42"))
    key = gw.create_user("alice", "10")
    response = sdk(gw, key, "deepseek").responses.create(
        model="deepseek-reasoner", input="6*7?", reasoning={"effort": "high"}
    )
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message"]
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and reasoning.content is not None
    assert reasoning.content[0].text == "Six times seven."
    assert response.output_text == "42"
    (row,) = gw.requests()
    assert row.cost > 0


def test_structured_output_and_the_output_limit_are_translated(gw: Gateway, fakes: Fakes) -> None:
    fakes.mistral.enqueue(Answer(text='{"n": 1}'))
    key = gw.create_user("alice", "10")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response = sdk(gw, key, "mistral").responses.create(
        model=MODELS["mistral"],
        input="A number",
        max_output_tokens=50,
        temperature=0.2,
        text={"format": {"type": "json_schema", "name": "number", "schema": schema}},
    )
    assert response.output_text == '{"n": 1}'
    body = fakes.mistral.last_request.body
    assert isinstance(body, dict)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "number", "schema": schema},
    }
    assert (body["max_tokens"], body["temperature"]) == (50, 0.2)


def test_a_cut_answer_is_incomplete(gw: Gateway, fakes: Fakes) -> None:
    fakes.llama.enqueue(Answer(text="one two three", finish_reason="length"))
    key = gw.create_user("alice", "10")
    response = sdk(gw, key, "llama").responses.create(
        model=MODELS["llama"], input="Count", max_output_tokens=16
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"previous_response_id": "resp_abc"}, "previous_response_id"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"frobnicate": True}, "frobnicate"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        "input[0].content[0]",
    ),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0]"),
    ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("extra", "param"), REFUSED)
def test_what_cannot_be_translated_is_400_free_and_never_sent(
    gw: Gateway, fakes: Fakes, path: str, extra: dict[str, Any], param: str
) -> None:
    key = gw.create_user("alice", "10")
    before = gw.balance("alice")
    body = {"model": MODELS[path], "input": "hi", **extra}
    r = httpx.post(
        f"{gw.url}/ai/{path}/responses", headers={"Authorization": f"Bearer {key}"}, json=body
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param
    assert fakes.of(path).requests == []
    assert gw.balance("alice") == before
    (row,) = gw.requests()
    assert (row.status, row.cost, row.surface) == ("error", 0, "responses")


def test_reasoning_items_sent_back_are_left_out(gw: Gateway, fakes: Fakes) -> None:
    fakes.mistral.enqueue(Answer(text="ok"))
    key = gw.create_user("alice", "10")
    sdk(gw, key, "mistral").responses.create(
        model=MODELS["mistral"],
        input=[
            {"role": "user", "content": "a"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "item_reference", "id": "rs_2"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "b"}]},
            {"role": "user", "content": [{"type": "input_text", "text": "c"}]},
        ],
    )
    roles = [(m["role"], m["content"]) for m in sent_messages(fakes.mistral)]
    assert roles == [("user", "a"), ("assistant", "b"), ("user", [{"type": "text", "text": "c"}])]


def test_a_stored_response_is_not_found_on_a_translated_path(gw: Gateway) -> None:
    key = gw.create_user("alice", "10")
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gw, key, "mistral").responses.retrieve("resp_123")
    assert "not stored" in caught.value.message


def test_an_idempotent_translated_stream_is_replayed_uncharged(gw: Gateway, fakes: Fakes) -> None:
    fakes.claude.enqueue(Answer(text="hello there"))
    key = gw.create_user("alice", "10")
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "tr-1"}
    body = {"model": MODELS["claude"], "input": "Say hello", "stream": True}
    url = f"{gw.url}/ai/claude/responses"
    first = httpx.post(url, headers=headers, json=body)
    again = httpx.post(url, headers=headers, json=body)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.text == first.text and "response.completed" in first.text
    assert len(gw.requests()) == 1
    assert len(fakes.claude.requests) == 1


async def _leave_after(gw: Gateway, key: str, body: dict[str, Any], stop: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))
    payload = orjson.dumps(body)
    writer.write(
        (
            "POST /ai/mistral/responses HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        + payload
    )
    await writer.drain()
    received = b""
    try:
        async with asyncio.timeout(10):
            while stop not in received:
                piece = await reader.read(65536)
                if not piece:
                    break
                received += piece
    finally:
        writer.close()
    return received


def test_a_client_that_leaves_mid_stream_is_settled_once(gw: Gateway, fakes: Fakes) -> None:
    fakes.mistral.enqueue(Answer(text="one two three four five six", chunk_delay=0.3))
    key = gw.create_user("alice", "10")
    before = gw.balance("alice")[0]
    body = {"model": MODELS["mistral"], "input": "Tell me a story", "stream": True}
    received = asyncio.run(_leave_after(gw, key, body, b'"delta":" two"'))
    assert b"response.completed" not in received
    gw.wait_settled()
    (row,) = gw.requests()
    assert (row.status, row.http_status) == ("cancelled", 499)
    assert 2 <= row.completion_tokens <= 4
    assert row.cost > 0
    assert gw.balance("alice") == (before - row.cost, 0)
    assert gw.reconcile() == []
