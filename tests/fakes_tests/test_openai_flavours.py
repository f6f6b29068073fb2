"""Mistral, Together and DeepSeek fakes: their quirks, proven with the official OpenAI SDK."""

from __future__ import annotations

import json
import re

import openai
import pytest

from tests.fakes import (
    Answer,
    ErrorReply,
    FakeDeepSeek,
    FakeMistral,
    FakeOpenAI,
    FakeServer,
    FakeTogether,
    ToolCall,
    Usage,
)

from .clients import HI, KEY, WEATHER_TOOL, openai_client, post, sse_data, sse_json

OPENAI_SHAPED = [FakeOpenAI, FakeMistral, FakeTogether, FakeDeepSeek]


@pytest.mark.parametrize("fake_class", OPENAI_SHAPED)
def test_every_openai_shaped_fake_parses_with_sdk(fake_class: type[FakeServer]) -> None:
    with fake_class(KEY) as fake, openai_client(fake) as client:
        completion = client.chat.completions.create(model="some-model", messages=HI)
        stream = client.chat.completions.create(model="some-model", messages=HI, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert completion.choices[0].message.content == f"Hello from {fake.flavour}!"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 3)
    assert text == f"Hello from {fake.flavour}!"


@pytest.mark.parametrize(
    ("fake_class", "path"),
    [
        (FakeOpenAI, "/v1"),
        (FakeMistral, "/v1"),
        (FakeTogether, "/v1"),
        (FakeDeepSeek, ""),
    ],
)
def test_base_urls(fake_class: type[FakeServer], path: str) -> None:
    with fake_class(KEY) as fake:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", fake.origin)
        assert fake.base_url == fake.origin + path


# ---- Mistral --------------------------------------------------------------------


def test_mistral_stream_has_usage_on_last_chunk_only(mistral_fake: FakeMistral) -> None:
    response = post(mistral_fake, {"model": "mistral-small-latest", "messages": HI, "stream": True})
    chunks = sse_json(response)
    assert sse_data(response)[-1] == "[DONE]"
    *first, last = chunks
    assert all("usage" not in c for c in first)
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_mistral_rejects_include_usage_with_422(mistral_fake: FakeMistral) -> None:
    with openai_client(mistral_fake) as client, pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(
            model="mistral-large-latest",
            messages=HI,
            stream=True,
            stream_options={"include_usage": True},
        )
    options = {"include_usage": True}
    body = {"model": "m", "messages": HI, "stream": True, "stream_options": options}
    response = post(mistral_fake, body)
    assert response.status_code == 422
    body = response.json()
    assert body["object"] == "error"
    assert body["message"]["detail"][0]["type"] == "extra_forbidden"
    assert body["message"]["detail"][0]["loc"] == ["body", "stream_options", "include_usage"]


def test_mistral_tool_calls_have_nine_char_ids_and_stream_whole(mistral_fake: FakeMistral) -> None:
    arguments = json.dumps({"city": "Lyon", "unit": "celsius"})
    answer = Answer(tool_calls=(ToolCall("get_weather", arguments),))
    mistral_fake.enqueue(answer, answer)
    with openai_client(mistral_fake) as client:
        completion = client.chat.completions.create(
            model="mistral-large-latest", messages=HI, tools=[WEATHER_TOOL]
        )
    (call,) = completion.choices[0].message.tool_calls or []
    assert re.fullmatch(r"[a-zA-Z0-9]{9}", call.id)
    assert completion.choices[0].finish_reason == "tool_calls"
    body = {"model": "mistral-large-latest", "messages": HI, "stream": True}
    deltas = [c["choices"][0]["delta"] for c in sse_json(post(mistral_fake, body))]
    tool_deltas = [d["tool_calls"] for d in deltas if d.get("tool_calls")]
    assert len(tool_deltas) == 1
    assert tool_deltas[0][0]["function"] == {"name": "get_weather", "arguments": arguments}


@pytest.mark.parametrize("tool_id", ["call_abc123", "abc", "abcdefgh!"])
def test_mistral_rejects_foreign_tool_call_ids(mistral_fake: FakeMistral, tool_id: str) -> None:
    messages = [
        *HI,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": tool_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": tool_id, "content": "sunny"},
    ]
    response = post(mistral_fake, {"model": "mistral-large-latest", "messages": messages})
    assert response.status_code == 400
    assert response.json() == {
        "object": "error",
        "message": f"Tool call id was {tool_id} but must be a-z, A-Z, 0-9, with a length of 9.",
        "type": "invalid_function_call",
        "param": None,
        "code": "3280",
    }
    valid = json.loads(json.dumps(messages).replace(tool_id, "abcDEF123"))
    assert post(mistral_fake, {"model": "m", "messages": valid}).status_code == 200


def test_mistral_auth_and_error_bodies(mistral_fake: FakeMistral) -> None:
    response = post(mistral_fake, {"model": "m", "messages": HI}, headers={})
    assert response.status_code == 401
    assert response.json()["message"] == "Unauthorized"
    assert "request_id" in response.json()
    mistral_fake.enqueue(ErrorReply(429, "Requests rate limit exceeded"))
    error = post(mistral_fake, {"model": "m", "messages": HI}).json()
    assert error == {
        "object": "error",
        "message": "Requests rate limit exceeded",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }


# ---- Together -------------------------------------------------------------------


def test_together_stream_has_null_usage_until_the_last_chunk(together_fake: FakeTogether) -> None:
    body = {"model": "meta-llama/Llama-3.3-70B-Instruct-Turbo", "messages": HI, "stream": True}
    response = post(together_fake, body)
    *first, last = sse_json(response)
    assert all(c["usage"] is None for c in first)
    assert last["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert last["choices"][0]["finish_reason"] == "stop"
    assert [c["choices"][0]["text"] for c in first[1:]] == ["Hello", " from", " together!"]
    assert sse_data(response)[-1] == "[DONE]"


def test_together_stream_usage_reaches_sdk(together_fake: FakeTogether) -> None:
    with openai_client(together_fake) as client:
        chunks = list(client.chat.completions.create(model="m", messages=HI, stream=True))
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 8


def test_together_rejects_bad_key_with_its_body(together_fake: FakeTogether) -> None:
    response = post(together_fake, {"model": "m", "messages": HI}, {"Authorization": "Bearer no"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "api.together.xyz" in response.json()["error"]["message"]


# ---- DeepSeek -------------------------------------------------------------------


def test_deepseek_reasoner_returns_reasoning_content(deepseek_fake: FakeDeepSeek) -> None:
    with openai_client(deepseek_fake) as client:
        completion = client.chat.completions.create(model="deepseek-reasoner", messages=HI)
    message = completion.choices[0].message
    assert message.content == "Hello from deepseek!"
    assert message.model_extra is not None
    assert message.model_extra["reasoning_content"] == "Let me think about it."
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5 + 3
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 5
    assert deepseek_fake.last_request.path == "/chat/completions"


def test_deepseek_reasoner_streams_reasoning_before_content(deepseek_fake: FakeDeepSeek) -> None:
    with openai_client(deepseek_fake) as client:
        chunks = list(client.chat.completions.create(model="deepseek-r1", messages=HI, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = [(d.model_extra or {}).get("reasoning_content") for d in deltas]
    content = [d.content for d in deltas]
    assert "".join(r or "" for r in reasoning) == "Let me think about it."
    assert "".join(c or "" for c in content) == "Hello from deepseek!"
    last_reasoning = max(i for i, r in enumerate(reasoning) if r)
    first_content = min(i for i, c in enumerate(content) if c)
    assert last_reasoning < first_content


def test_deepseek_chat_has_no_reasoning(deepseek_fake: FakeDeepSeek) -> None:
    body = post(deepseek_fake, {"model": "deepseek-chat", "messages": HI}).json()
    assert "reasoning_content" not in body["choices"][0]["message"]
    assert "completion_tokens_details" not in body["usage"]


@pytest.mark.parametrize("include_usage", [False, True])
def test_deepseek_stream_usage_rides_on_finish_chunk(
    deepseek_fake: FakeDeepSeek, include_usage: bool
) -> None:
    body = {"model": "deepseek-chat", "messages": HI, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    *first, last = sse_json(post(deepseek_fake, body))
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"]["prompt_cache_miss_tokens"] == 5
    if include_usage:
        assert all(c["usage"] is None for c in first)
    else:
        assert all("usage" not in c for c in first)


def test_deepseek_cache_hit_usage(deepseek_fake: FakeDeepSeek) -> None:
    deepseek_fake.enqueue(Answer(usage=Usage(prompt_tokens=64, cached_tokens=48)))
    usage = post(deepseek_fake, {"model": "deepseek-chat", "messages": HI}).json()["usage"]
    assert usage["prompt_cache_hit_tokens"] == 48
    assert usage["prompt_cache_miss_tokens"] == 16
    assert usage["prompt_tokens_details"] == {"cached_tokens": 48}
    assert usage["total_tokens"] == 64 + 3


def test_deepseek_rejects_max_tokens_out_of_range(deepseek_fake: FakeDeepSeek) -> None:
    response = post(deepseek_fake, {"model": "deepseek-chat", "messages": HI, "max_tokens": 9000})
    assert response.status_code == 400
    assert "[1, 8192]" in response.json()["error"]["message"]
    body = {"model": "deepseek-reasoner", "messages": HI, "max_tokens": 9000}
    assert post(deepseek_fake, body).status_code == 200


def test_deepseek_auth_failure_body(deepseek_fake: FakeDeepSeek) -> None:
    response = post(
        deepseek_fake, {"model": "m", "messages": HI}, {"Authorization": "Bearer sk-x9z7"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.json()["error"]["message"].endswith("****x9z7 is invalid")
