"""FakeOpenAI speaks OpenAI's Chat Completions format, proven with the official SDK."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.fakes import Answer, FakeOpenAI, ToolCall, Usage

from .clients import HI, KEY, WEATHER_TOOL, post, sse_data, sse_json


def test_default_answer_parses_with_sdk(oai: openai.OpenAI) -> None:
    messages: Any = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Say hello"}]},
    ]
    completion = oai.chat.completions.create(model="gpt-4o", messages=messages)
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o"
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello from openai!"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 10
    assert completion.usage.completion_tokens == 3
    assert completion.usage.total_tokens == 13
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0


def test_every_request_is_recorded(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    oai.chat.completions.create(model="gpt-4o", messages=HI, temperature=0.2)
    (record,) = openai_fake.requests
    assert record.method == "POST"
    assert record.path == "/v1/chat/completions"
    assert record.headers["authorization"] == f"Bearer {KEY}"
    assert record.body == {"model": "gpt-4o", "messages": HI, "temperature": 0.2}
    assert record.wait_done()
    assert record.status == 200
    assert record.completed
    assert not record.disconnected
    openai_fake.reset()
    assert openai_fake.requests == []


def test_stream_with_include_usage_sends_usage_chunk_then_done(openai_fake: FakeOpenAI) -> None:
    body = {"model": "gpt-4o", "messages": HI, "stream": True}
    response = post(openai_fake, {**body, "stream_options": {"include_usage": True}})
    assert response.headers["content-type"].startswith("text/event-stream")
    data = sse_data(response)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    *content_chunks, usage_chunk = chunks
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == 5
    assert usage_chunk["usage"]["completion_tokens"] == 3
    assert all(c["usage"] is None for c in content_chunks)
    assert content_chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert content_chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    texts = [c["choices"][0]["delta"].get("content") for c in content_chunks[1:-1]]
    assert texts == ["Hello", " from", " openai!"]


def test_stream_with_include_usage_parses_with_sdk(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from openai!"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 8


def test_stream_without_include_usage_has_no_usage(openai_fake: FakeOpenAI) -> None:
    response = post(openai_fake, {"model": "gpt-4o", "messages": HI, "stream": True})
    chunks = sse_json(response)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert sse_data(response)[-1] == "[DONE]"


def test_tool_calls_stream_in_fragments_and_accumulate(
    openai_fake: FakeOpenAI, oai: openai.OpenAI
) -> None:
    weather = json.dumps({"city": "Paris", "unit": "celsius"})
    answer = Answer(tool_calls=(ToolCall("get_weather", weather), ToolCall("get_time", "{}")))
    openai_fake.enqueue(answer, answer)
    with oai.chat.completions.stream(model="gpt-4o", messages=HI, tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls if c.type == "function"] == [
        ("get_weather", weather),
        ("get_time", "{}"),
    ]
    assert all(c.id.startswith("call_") for c in calls)
    raw = sse_json(post(openai_fake, {"model": "gpt-4o", "messages": HI, "stream": True}))
    deltas = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in raw
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    first = [d for d in deltas if d["index"] == 0]
    assert first[0]["id"].startswith("call_")
    assert first[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert len(first) > 2
    assert "".join(d["function"]["arguments"] for d in first) == weather


def test_tool_calls_without_stream(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    openai_fake.enqueue(
        Answer(tool_calls=(ToolCall("get_weather", '{"city": "Oslo"}', id="call_x"),))
    )
    completion = oai.chat.completions.create(model="gpt-4o", messages=HI, tools=[WEATHER_TOOL])
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    assert message.tool_calls[0].id == "call_x"
    assert message.tool_calls[0].type == "function"
    assert message.tool_calls[0].function.arguments == '{"city": "Oslo"}'
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 1 + 2  # 16 characters -> 2 fragments


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_output_limit_truncates_with_finish_reason_length(oai: openai.OpenAI, field: str) -> None:
    two: Any = {field: 2}
    completion = oai.chat.completions.create(model="gpt-4o", messages=HI, **two)
    assert completion.choices[0].message.content == "Hello from"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2
    one: Any = {field: 1}
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=HI, stream=True, **one))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello"
    assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.parametrize("model", ["gpt-5", "gpt-5.4-mini", "o1", "o3-mini", "o4-mini"])
def test_reasoning_models_reject_max_tokens(openai_fake: FakeOpenAI, model: str) -> None:
    response = post(openai_fake, {"model": model, "messages": HI, "max_tokens": 10})
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "unsupported_parameter",
        }
    }


def test_reasoning_model_rejection_reaches_sdk_as_bad_request(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="gpt-5-mini", messages=HI, max_tokens=5)
    assert caught.value.status_code == 400
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "max_tokens"


def test_reasoning_model_rejects_non_default_temperature(openai_fake: FakeOpenAI) -> None:
    response = post(openai_fake, {"model": "o3", "messages": HI, "temperature": 0.2})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_value"
    assert response.json()["error"]["param"] == "temperature"


def test_reasoning_model_counts_reasoning_tokens(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="gpt-5-mini", messages=HI, max_completion_tokens=100
    )
    assert completion.choices[0].message.content == "Hello from openai!"
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 5  # "Let me think about it."
    assert usage.completion_tokens == 5 + 3


def test_reasoning_spends_the_limit_first(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="o4-mini", messages=HI, max_completion_tokens=6)
    assert completion.choices[0].message.content == "Hello"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 6


def test_other_models_accept_max_tokens(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=50)
    assert completion.choices[0].finish_reason == "stop"


def test_stream_options_without_stream_are_rejected(openai_fake: FakeOpenAI) -> None:
    body = {"model": "gpt-4o", "messages": HI, "stream_options": {"include_usage": True}}
    response = post(openai_fake, body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream_options"


def test_custom_answer_text_reasoning_and_cached_usage(
    openai_fake: FakeOpenAI, oai: openai.OpenAI
) -> None:
    usage = Usage(prompt_tokens=100, cached_tokens=60)
    openai_fake.enqueue(Answer(text="Custom words here", reasoning="a b", usage=usage))
    completion = oai.chat.completions.create(model="gpt-4o", messages=HI)
    assert completion.choices[0].message.content == "Custom words here"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 100
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 60
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 2
    assert completion.usage.completion_tokens == 5


def test_constructor_text_replaces_default(oai: openai.OpenAI) -> None:
    with (
        FakeOpenAI(KEY, text="One two") as fake,
        openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0) as client,
    ):
        completion = client.chat.completions.create(model="gpt-4o", messages=HI)
    assert completion.choices[0].message.content == "One two"


def test_missing_key_gets_openai_401(openai_fake: FakeOpenAI) -> None:
    response = post(openai_fake, {"model": "gpt-4o", "messages": HI}, headers={})
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"].startswith("You didn't provide an API key.")
    assert error["type"] == "invalid_request_error"


def test_wrong_key_gets_openai_401_with_masked_key(openai_fake: FakeOpenAI) -> None:
    with (
        openai.OpenAI(
            base_url=openai_fake.base_url, api_key="sk-wrong-key-1234", max_retries=0
        ) as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert caught.value.code == "invalid_api_key"
    assert "sk-wrong-key-1234" not in str(caught.value)
    assert "1234" in str(caught.value)
    assert openai_fake.last_request.status == 401


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"messages": HI}, None),
        ({"model": "gpt-4o"}, "missing_required_parameter"),
        ({"model": "gpt-4o", "messages": []}, "empty_array"),
    ],
)
def test_invalid_bodies_get_400(
    openai_fake: FakeOpenAI, body: dict[str, object], code: str | None
) -> None:
    response = post(openai_fake, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_unknown_path_gets_404(openai_fake: FakeOpenAI) -> None:
    with (
        openai.OpenAI(base_url=openai_fake.origin, api_key=KEY, max_retries=0) as client,
        pytest.raises(openai.NotFoundError),
    ):
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert openai_fake.last_request.path == "/chat/completions"


def test_n_answers_are_n_choices_and_their_output_is_counted_n_times(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-4o", messages=HI, n=3)
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert {choice.message.content for choice in completion.choices} == {"Hello from openai!"}
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3 * 3
    assert completion.usage.prompt_tokens == 5  # the prompt is counted once
