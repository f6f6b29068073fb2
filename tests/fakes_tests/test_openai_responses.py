"""FakeOpenAI speaks the Responses API, proven with the official SDK and raw SSE."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pydantic
import pytest

from tests.fakes import Answer, ErrorReply, FakeOpenAI, ToolCall, Usage

from .clients import KEY, post_path, sse_events

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
ASK = "What is the weather in Paris?"  # 3 + 6 = 9 input tokens
PARIS = '{"city": "Paris"}'  # 17 characters: 2 argument fragments, 3 output tokens
TEXT_EVENTS = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


def test_response_parses_with_sdk(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-4o", input="Say hello", instructions="Be brief.")
    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.model == "gpt-4o"
    assert response.instructions == "Be brief."
    assert response.output_text == "Hello from openai!"
    (message,) = response.output
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert message.role == "assistant"
    assert message.status == "completed"
    assert [(part.type, getattr(part, "text", None)) for part in message.content] == [
        ("output_text", "Hello from openai!")
    ]
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == (3 + 2) + (3 + 2)  # instructions + the input message
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens == 3
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert usage.total_tokens == 13


def test_request_is_recorded(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    items: Any = [{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}]
    oai.responses.create(model="gpt-4o", input=items, max_output_tokens=64, store=False)
    record = openai_fake.last_request
    assert (record.method, record.path) == ("POST", "/v1/responses")
    assert record.headers["authorization"] == f"Bearer {KEY}"
    assert record.body == {
        "model": "gpt-4o",
        "input": items,
        "max_output_tokens": 64,
        "store": False,
    }
    assert record.status == 200


def test_raw_stream_event_sequence(openai_fake: FakeOpenAI) -> None:
    response = post_path(
        openai_fake, "/responses", {"model": "gpt-4o", "input": "Say hello", "stream": True}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in response.text
    events = sse_events(response)
    names = [name for name, _ in events]
    assert names == ["response.created", "response.in_progress", *TEXT_EVENTS, "response.completed"]
    assert [data["type"] for _, data in events] == names
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    created = events[0][1]["response"]
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    assert events[1][1]["response"]["usage"] is None
    added = events[2][1]
    assert added["output_index"] == 0
    assert added["item"]["status"] == "in_progress"
    assert added["item"]["content"] == []
    item_id = added["item"]["id"]
    deltas = [data for name, data in events if name == "response.output_text.delta"]
    assert [d["delta"] for d in deltas] == ["Hello", " from", " openai!"]
    assert {(d["item_id"], d["output_index"], d["content_index"]) for d in deltas} == {
        (item_id, 0, 0)
    }
    assert events[7][1]["text"] == "Hello from openai!"
    assert events[8][1]["part"]["text"] == "Hello from openai!"
    assert events[9][1]["item"]["status"] == "completed"
    final = events[-1][1]["response"]
    assert final["id"] == created["id"]
    assert final["status"] == "completed"
    assert final["usage"]["input_tokens"] == 5
    assert final["usage"]["output_tokens"] == 3
    assert final["usage"]["total_tokens"] == 8
    assert final["output"] == [events[9][1]["item"]]


def test_stream_helper_accumulates_the_final_response(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-4o", input="Say hello") as stream:
        texts = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert texts == ["Hello", " from", " openai!"]
    assert final.output_text == "Hello from openai!"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (5, 3)


def test_streamed_create_yields_typed_events(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="gpt-4o", input="Say hello", stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    usages = [getattr(getattr(e, "response", None), "usage", None) for e in events]
    assert usages[:-1] == [None] * (len(events) - 1)
    assert usages[-1] is not None
    assert usages[-1].total_tokens == 8


def test_function_tool_round_trip_with_previous_response(
    openai_fake: FakeOpenAI, oai: openai.OpenAI
) -> None:
    openai_fake.enqueue(Answer(tool_calls=(ToolCall("get_weather", PARIS),)))
    first = oai.responses.create(model="gpt-4o", input=ASK, tools=[WEATHER])
    (call,) = first.output
    assert call.type == "function_call"
    assert (call.name, call.arguments, call.status) == ("get_weather", PARIS, "completed")
    assert call.call_id.startswith("call_")
    assert call.id is not None
    assert call.id.startswith("fc_")
    assert first.usage is not None
    assert (first.usage.input_tokens, first.usage.output_tokens) == (9, 1 + 2)
    assert first.tools[0].type == "function"
    assert first.tools[0].name == "get_weather"
    result: Any = [
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"}
    ]
    second = oai.responses.create(model="gpt-4o", previous_response_id=first.id, input=result)
    assert second.output_text == "Hello from openai!"
    assert second.previous_response_id == first.id
    assert second.usage is not None
    # the stored conversation (question, call) and then the result
    assert second.usage.input_tokens == 9 + 3 + (3 + 3)
    assert openai_fake.last_request.body["previous_response_id"] == first.id


def test_function_tool_round_trip_without_storage(
    openai_fake: FakeOpenAI, oai: openai.OpenAI
) -> None:
    openai_fake.enqueue(Answer(tool_calls=(ToolCall("get_weather", PARIS),)))
    first = oai.responses.create(model="gpt-4o", input=ASK, tools=[WEATHER], store=False)
    (call,) = first.output
    assert call.type == "function_call"
    items: Any = [
        {"role": "user", "content": ASK},
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},
    ]
    second = oai.responses.create(model="gpt-4o", input=items, tools=[WEATHER], store=False)
    assert second.output_text == "Hello from openai!"
    assert second.usage is not None
    assert second.usage.input_tokens == 9 + 3 + (3 + 3)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(first.id)


def test_streamed_function_call_events_and_round_trip(
    openai_fake: FakeOpenAI, oai: openai.OpenAI
) -> None:
    arguments = json.dumps({"city": "Paris", "unit": "celsius"})  # 4 fragments
    openai_fake.enqueue(Answer(tool_calls=(ToolCall("get_weather", arguments),)))
    raw = post_path(
        openai_fake,
        "/responses",
        {"model": "gpt-4o", "input": ASK, "tools": [WEATHER], "stream": True},
    )
    events = sse_events(raw)
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * 4,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[2][1]["item"]
    assert (added["type"], added["arguments"], added["status"]) == (
        "function_call",
        "",
        "in_progress",
    )
    deltas = [data for name, data in events if name.endswith("arguments.delta")]
    assert "".join(d["delta"] for d in deltas) == arguments
    assert {(d["item_id"], d["output_index"]) for d in deltas} == {(added["id"], 0)}
    assert events[7][1]["arguments"] == arguments
    assert events[-1][1]["response"]["usage"]["output_tokens"] == 1 + 4

    openai_fake.enqueue(Answer(tool_calls=(ToolCall("get_weather", arguments),)))
    with oai.responses.stream(model="gpt-4o", input=ASK, tools=[WEATHER]) as stream:
        fragments = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        first = stream.get_final_response()
    assert "".join(fragments) == arguments
    (call,) = first.output
    assert call.type == "function_call"
    result: Any = [{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}]
    with oai.responses.stream(
        model="gpt-4o", input=result, previous_response_id=first.id
    ) as stream:
        second = stream.get_final_response()
    assert second.output_text == "Hello from openai!"
    assert second.usage is not None
    assert second.usage.input_tokens == 9 + 3 + (3 + 1)


def test_reasoning_model_adds_a_reasoning_item_and_counts_its_tokens(
    oai: openai.OpenAI,
) -> None:
    response = oai.responses.create(model="gpt-5-mini", input="Say hello")
    reasoning, message = response.output
    assert reasoning.type == "reasoning"
    assert reasoning.id.startswith("rs_")
    assert reasoning.summary == []
    assert message.type == "message"
    assert response.reasoning is not None
    assert response.reasoning.effort == "medium"
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 5  # "Let me think about it."
    assert response.usage.output_tokens == 5 + 3


def test_reasoning_summary_streams_when_asked(openai_fake: FakeOpenAI) -> None:
    body = {
        "model": "o4-mini",
        "input": "Say hello",
        "reasoning": {"effort": "high", "summary": "auto"},
        "stream": True,
    }
    events = sse_events(post_path(openai_fake, "/responses", body))
    names = [name for name, _ in events]
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
    ]
    deltas = [d["delta"] for n, d in events if n == "response.reasoning_summary_text.delta"]
    assert "".join(deltas) == "Let me think about it."
    done = next(d for n, d in events if n == "response.output_item.done")
    assert done["item"]["summary"] == [{"type": "summary_text", "text": "Let me think about it."}]
    final = events[-1][1]["response"]
    assert final["reasoning"] == {"effort": "high", "summary": "auto"}
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]


def test_effort_none_turns_reasoning_off(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-5", input="Say hello", reasoning={"effort": "none"})
    assert [item.type for item in response.output] == ["message"]
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 0


def test_max_output_tokens_makes_the_response_incomplete(
    openai_fake: FakeOpenAI, oai: openai.OpenAI
) -> None:
    words = " ".join(f"w{i}" for i in range(20))
    openai_fake.enqueue(Answer(text=words), Answer(text=words))
    response = oai.responses.create(model="gpt-4o", input="Say hello", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == " ".join(f"w{i}" for i in range(16))
    assert response.output[0].type == "message"
    assert response.output[0].status == "incomplete"
    assert response.usage is not None
    assert response.usage.output_tokens == 16
    body = {"model": "gpt-4o", "input": "Say hello", "max_output_tokens": 16, "stream": True}
    events = sse_events(post_path(openai_fake, "/responses", body))
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["usage"]["output_tokens"] == 16


def test_structured_output_format_is_echoed_and_parsed(
    openai_fake: FakeOpenAI, oai: openai.OpenAI
) -> None:
    class Weather(pydantic.BaseModel):
        city: str

    openai_fake.enqueue(Answer(text=PARIS))
    parsed = oai.responses.parse(model="gpt-4o", input=ASK, text_format=Weather)
    assert parsed.output_parsed == Weather(city="Paris")
    fmt = openai_fake.last_request.body["text"]["format"]
    assert (fmt["type"], fmt["name"]) == ("json_schema", "Weather")
    assert parsed.text is not None
    assert parsed.text.format is not None
    assert parsed.text.format.type == "json_schema"


def test_custom_usage_and_cached_tokens(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    openai_fake.enqueue(Answer(usage=Usage(prompt_tokens=2000, cached_tokens=1500)))
    response = oai.responses.create(model="gpt-4o", input="Say hello")
    assert response.usage is not None
    assert response.usage.input_tokens == 2000
    assert response.usage.input_tokens_details.cached_tokens == 1500
    assert response.usage.total_tokens == 2003


def test_stored_response_is_retrieved(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    created = oai.responses.create(model="gpt-4o", input="Say hello")
    again = oai.responses.retrieve(created.id)
    assert again == created
    record = openai_fake.last_request
    assert (record.method, record.path) == ("GET", f"/v1/responses/{created.id}")
    assert openai_fake.pending == 0


def test_unknown_response_id_is_openai_404(openai_fake: FakeOpenAI) -> None:
    response = httpx.get(
        openai_fake.base_url + "/responses/resp_nope",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=5.0,
    )
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "Response with id 'resp_nope' not found.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    unauthorised = httpx.get(openai_fake.base_url + "/responses/resp_nope", timeout=5.0)
    assert unauthorised.status_code == 401


GOOD: dict[str, Any] = {"model": "gpt-4o", "input": "Say hello"}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "Say hello"}, "model", "missing_required_parameter"),
        ({"model": "gpt-4o"}, "input", "missing_required_parameter"),
        ({**GOOD, "messages": []}, "messages", "unknown_parameter"),
        ({**GOOD, "max_tokens": 100}, "max_tokens", "unknown_parameter"),
        ({**GOOD, "max_output_tokens": 5}, "max_output_tokens", "integer_below_min_value"),
        ({**GOOD, "reasoning": {"effort": "low"}}, "reasoning.effort", "unsupported_parameter"),
        (
            {**GOOD, "tools": [{"type": "function", "function": {"name": "get_weather"}}]},
            "tools[0].name",
            "missing_required_parameter",
        ),
        (
            {**GOOD, "text": {"format": {"type": "json_schema", "schema": {}}}},
            "text.format.name",
            "missing_required_parameter",
        ),
        (
            {**GOOD, "previous_response_id": "resp_missing"},
            "previous_response_id",
            "previous_response_not_found",
        ),
        (
            {**GOOD, "input": [{"type": "function_call_output", "call_id": "c1", "output": "x"}]},
            "input",
            None,
        ),
        ({**GOOD, "input": [{"role": "tool", "content": "x"}]}, "input[0].role", "invalid_value"),
    ],
)
def test_invalid_requests_get_openai_400(
    openai_fake: FakeOpenAI, body: dict[str, Any], param: str, code: str | None
) -> None:
    response = post_path(openai_fake, "/responses", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert openai_fake.pending == 0


def test_orphan_function_output_message_names_the_call(openai_fake: FakeOpenAI) -> None:
    orphan = [{"type": "function_call_output", "call_id": "call_x", "output": "x"}]
    response = post_path(openai_fake, "/responses", {**GOOD, "input": orphan})
    assert response.json()["error"]["message"] == (
        "No tool call found for function call output with call_id call_x."
    )


def test_rejection_reaches_sdk_as_bad_request(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model="gpt-4o", input="Say hello", reasoning={"effort": "low"})
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "reasoning.effort"


def test_queued_errors_and_stream_faults_apply(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    openai_fake.enqueue(ErrorReply(429, retry_after=2))
    with pytest.raises(openai.RateLimitError) as caught:
        oai.responses.create(model="gpt-4o", input="Say hello")
    assert caught.value.response.headers["retry-after"] == "2"
    openai_fake.enqueue(Answer(error_after=1))
    body = {**GOOD, "stream": True}
    events = sse_events(post_path(openai_fake, "/responses", body))
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "error",
    ]
    assert events[-1][1] == {
        "type": "error",
        "code": "server_error",
        "message": "The server had an error while processing your request. Sorry about that!",
        "param": None,
        "sequence_number": 5,
    }
    openai_fake.enqueue(Answer(cut_after=2))
    with pytest.raises(httpx.RemoteProtocolError):
        post_path(openai_fake, "/responses", body)
    assert openai_fake.last_request.chunks_sent == 2
