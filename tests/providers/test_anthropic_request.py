"""OpenAI request -> Anthropic request: golden fixtures and one test per rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ai_service.errors import InvalidRequestError
from ai_service.providers.anthropic import ALLOWED_FIELDS, DROPPED_FIELDS
from ai_service.providers.anthropic.messages import PLACEHOLDER_TEXT
from ai_service.providers.anthropic.request import to_anthropic_request

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
MODEL = "claude-sonnet-4-5-20250929"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def translate(
    body: dict[str, Any],
    *,
    model: str = MODEL,
    max_tokens: int = 1024,
    stream: bool = False,
) -> dict[str, Any]:
    return to_anthropic_request(body, model=model, max_tokens=max_tokens, stream=stream)


def messages(*msgs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "claude", "messages": list(msgs), **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return message


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool(call_id: str, content: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def invalid(body: dict[str, Any], **kwargs: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        translate(body, **kwargs)
    assert info.value.status == 400
    return info.value


# -- golden fixtures -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "max_tokens", "stream"), [("simple", 100, False), ("complex", 4096, True)]
)
def test_golden_request_translation(name: str, max_tokens: int, stream: bool) -> None:
    body = load(f"request_{name}.openai.json")
    expected = load(f"request_{name}.anthropic.json")
    assert translate(body, max_tokens=max_tokens, stream=stream) == expected


def test_output_only_ever_holds_allowed_fields() -> None:
    body = load("request_complex.openai.json")
    body.update(dict.fromkeys(DROPPED_FIELDS, 1))
    body["some_future_openai_field"] = {"x": 1}
    out = translate(body)
    assert set(out) <= ALLOWED_FIELDS
    assert not set(out) & set(DROPPED_FIELDS)


@pytest.mark.parametrize("field", DROPPED_FIELDS)
def test_each_dropped_field_is_dropped(field: str) -> None:
    out = translate(messages(user("hi"), **{field: {"include_usage": True}}))
    assert out == {"model": MODEL, "max_tokens": 1024, "messages": [user("hi")]}


def test_max_tokens_is_always_the_resolved_limit() -> None:
    body = messages(user("hi"), max_tokens=10, max_completion_tokens=20)
    assert translate(body, max_tokens=777)["max_tokens"] == 777


# -- system and developer -----------------------------------------------------------


def test_system_and_developer_messages_join_in_order_wherever_they_stand() -> None:
    body = messages(
        {"role": "system", "content": "one"},
        user("hi"),
        {"role": "developer", "content": [{"type": "text", "text": "two"}]},
        assistant("ok"),
        {"role": "system", "content": "three"},
        user("go"),
    )
    out = translate(body)
    assert out["system"] == "one\n\ntwo\n\nthree"
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]


def test_system_becomes_blocks_when_a_part_carries_cache_control() -> None:
    cached = {"type": "text", "text": "long prompt", "cache_control": {"type": "ephemeral"}}
    body = messages({"role": "system", "content": "short"}, {"role": "system", "content": [cached]})
    body["messages"].append(user("hi"))
    assert translate(body)["system"] == [
        {"type": "text", "text": "short"},
        {"type": "text", "text": "long prompt", "cache_control": {"type": "ephemeral"}},
    ]


def test_system_without_text_is_omitted_and_non_text_system_part_is_rejected() -> None:
    assert "system" not in translate(messages({"role": "system", "content": ""}, user("hi")))
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    error = invalid(messages({"role": "system", "content": [image]}, user("hi")))
    assert error.param == "messages[0].content[0]"


# -- turns and merging -------------------------------------------------------------------


def test_consecutive_same_role_messages_are_merged() -> None:
    out = translate(messages(user("a"), user("b"), assistant("c"), assistant("d"), user("e")))
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}],
        },
        {"role": "user", "content": "e"},
    ]


def test_tool_results_merge_into_one_user_turn_with_following_text() -> None:
    body = messages(
        user("weather?"),
        assistant(None, [call("call_1", "w", '{"c": 1}'), call("call_2", "w", "{}")]),
        tool("call_1", "sunny"),
        tool("call_2", [{"type": "text", "text": "rain"}, {"type": "text", "text": "cold"}]),
        user("thanks"),
    )
    out = translate(body)
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_1", "name": "w", "input": {"c": 1}},
            {"type": "tool_use", "id": "call_2", "name": "w", "input": {}},
        ],
    }
    assert out["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
            {
                "type": "tool_result",
                "tool_use_id": "call_2",
                "content": [{"type": "text", "text": "rain"}, {"type": "text", "text": "cold"}],
            },
            {"type": "text", "text": "thanks"},
        ],
    }
    assert len(out["messages"]) == 3


def test_tool_results_come_first_in_a_merged_user_turn() -> None:
    body = messages(
        user("q"), assistant(None, [call("call_1", "w", "{}")]), user("note"), tool("call_1", "r")
    )
    assert translate(body)["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "r"},
        {"type": "text", "text": "note"},
    ]


def test_empty_tool_result_has_no_content_and_missing_call_id_is_rejected() -> None:
    body = messages(user("q"), assistant(None, [call("c1", "w", "{}")]), tool("c1", ""))
    assert translate(body)["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1"}
    ]
    error = invalid(messages(user("q"), {"role": "tool", "content": "x"}))
    assert error.param == "messages[1].tool_call_id"


def test_tool_call_ids_are_made_acceptable_to_anthropic_consistently() -> None:
    body = messages(
        user("q"), assistant(None, [call("call:1/a", "w", "{}")]), tool("call:1/a", "r")
    )
    out = translate(body)
    assert out["messages"][1]["content"][0]["id"] == "call_1_a"
    assert out["messages"][2]["content"][0]["tool_use_id"] == "call_1_a"


def test_assistant_text_comes_before_its_tool_uses() -> None:
    body = messages(
        user("q"), assistant("Checking.", [call("c1", "w", '{"x": "y"}')]), tool("c1", "r")
    )
    assert translate(body)["messages"][1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "c1", "name": "w", "input": {"x": "y"}},
    ]


@pytest.mark.parametrize("arguments", ['{"city": ', "not json", "[1, 2]", "42"])
def test_invalid_tool_arguments_are_a_400_naming_the_parameter(arguments: str) -> None:
    body = messages(user("q"), assistant(None, [call("c1", "w", "{}"), call("c2", "w", arguments)]))
    error = invalid(body)
    assert error.param == "messages[1].tool_calls[1].function.arguments"


@pytest.mark.parametrize("arguments", ["", "  ", None])
def test_empty_tool_arguments_mean_an_empty_input(arguments: str | None) -> None:
    body = messages(user("q"), assistant(None, [call("c1", "w", "")]))
    body["messages"][1]["tool_calls"][0]["function"]["arguments"] = arguments
    assert translate(body)["messages"][1]["content"][0]["input"] == {}


def test_unknown_role_is_rejected() -> None:
    assert invalid(messages(user("q"), {"role": "function", "content": "x"})).param == (
        "messages[1].role"
    )


# -- content parts ------------------------------------------------------------------


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def test_data_url_image_becomes_base64_source() -> None:
    out = translate(messages(user([image(f"data:image/png;base64,{PNG}")])))
    assert out["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    ]


def test_http_image_becomes_url_source_and_jpg_is_read_as_jpeg() -> None:
    out = translate(
        messages(user([image("https://x.test/a.png"), image("data:image/jpg;base64,AA==")]))
    )
    assert out["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AA=="}},
    ]


@pytest.mark.parametrize(
    "url",
    [
        "data:image/bmp;base64,AA==",
        "data:image/png,rawbytes",
        "ftp://x/y.png",
        "data:image/png;base64,",
    ],
)
def test_unusable_image_urls_are_a_400(url: str) -> None:
    assert invalid(messages(user([{"type": "text", "text": "see"}, image(url)]))).param == (
        "messages[0].content[1].image_url"
    )


def test_pdf_file_becomes_document_and_file_id_is_rejected() -> None:
    pdf = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
    }
    assert translate(messages(user([pdf])))["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        }
    ]
    error = invalid(messages(user([{"type": "file", "file": {"file_id": "file-abc"}}])))
    assert error.param == "messages[0].content[0].file"


def test_unsupported_part_type_is_a_400() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}
    assert invalid(messages(user([audio]))).param == "messages[0].content[0].type"


def test_cache_control_on_parts_is_kept() -> None:
    part = {"type": "text", "text": "doc", "cache_control": {"type": "ephemeral"}}
    out = translate(messages(user([part])))
    assert out["messages"][0]["content"] == [part]


def test_empty_and_whitespace_text_parts_are_dropped() -> None:
    parts = [
        {"type": "text", "text": ""},
        {"type": "text", "text": "hi"},
        {"type": "text", "text": " \n"},
    ]
    assert translate(messages(user(parts)))["messages"] == [{"role": "user", "content": "hi"}]


def test_empty_assistant_message_is_dropped_and_neighbours_merge() -> None:
    out = translate(messages(user("a"), assistant(""), assistant([]), assistant(None), user("b")))
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


@pytest.mark.parametrize("content", ["", "   ", [], None, [{"type": "text", "text": ""}]])
def test_empty_user_message_gets_the_placeholder(content: Any) -> None:
    out = translate(messages(user("a"), assistant("b"), user(content)))
    assert out["messages"][2] == {"role": "user", "content": PLACEHOLDER_TEXT}


def test_empty_user_message_after_tool_results_adds_nothing() -> None:
    body = messages(user("q"), assistant(None, [call("c1", "w", "{}")]), tool("c1", "r"), user(""))
    assert translate(body)["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "r"}
    ]


def test_conversation_starting_with_assistant_gets_a_user_turn_first() -> None:
    body = messages(
        {"role": "system", "content": "s"}, assistant("Hello! How can I help?"), user("hi")
    )
    assert translate(body)["messages"] == [
        {"role": "user", "content": PLACEHOLDER_TEXT},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "hi"},
    ]


def test_system_only_conversation_gets_a_user_turn() -> None:
    out = translate(messages({"role": "system", "content": "Tell a joke."}))
    assert out["system"] == "Tell a joke."
    assert out["messages"] == [{"role": "user", "content": PLACEHOLDER_TEXT}]


def test_final_assistant_prefill_loses_trailing_whitespace() -> None:
    out = translate(messages(user("q"), assistant("The answer is ")))
    assert out["messages"][-1] == {"role": "assistant", "content": "The answer is"}
    out = translate(
        messages(user("q"), assistant("x"), user("y"), assistant([{"type": "text", "text": " "}]))
    )
    assert out["messages"][-1] == {"role": "user", "content": "y"}


def test_malformed_messages_are_a_400() -> None:
    assert invalid({"messages": []}).param == "messages"
    assert invalid({"messages": ["hello"]}).param == "messages[0]"
    assert invalid(messages(user(42))).param == "messages[0].content"
    assert invalid(messages(user([{"type": "text"}]))).param == "messages[0].content[0]"


# -- scalar options -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("END", ["END"]),
        (["a", "b"], ["a", "b"]),
        (["\n", "x", " "], ["x"]),
        (None, None),
        ("\n\n", None),
    ],
)
def test_stop_becomes_stop_sequences_without_whitespace_only_entries(
    stop: Any, expected: list[str] | None
) -> None:
    out = translate(messages(user("q"), stop=stop))
    assert out.get("stop_sequences") == expected


def test_stop_of_wrong_type_is_a_400() -> None:
    assert invalid(messages(user("q"), stop=[1])).param == "stop"


@pytest.mark.parametrize(("given", "sent"), [(0, 0.0), (0.3, 0.3), (1, 1.0), (1.7, 1.0), (2, 1.0)])
def test_temperature_is_clamped_to_anthropic_range(given: float, sent: float) -> None:
    assert translate(messages(user("q"), temperature=given))["temperature"] == sent


def test_top_p_is_passed_alone_but_dropped_beside_temperature_and_top_k_is_passed() -> None:
    assert translate(messages(user("q"), top_p=0.9, top_k=40)) == {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [user("q")],
        "top_p": 0.9,
        "top_k": 40,
    }
    out = translate(messages(user("q"), temperature=0.5, top_p=0.9))
    assert out["temperature"] == 0.5
    assert "top_p" not in out


@pytest.mark.parametrize(
    ("field", "value"), [("temperature", "hot"), ("top_p", True), ("top_k", 1.5)]
)
def test_wrongly_typed_sampling_values_are_a_400(field: str, value: Any) -> None:
    assert invalid(messages(user("q"), **{field: value})).param == field


def test_stream_is_sent_only_when_streaming() -> None:
    assert translate(messages(user("q")), stream=True)["stream"] is True
    assert "stream" not in translate(messages(user("q"), stream=True), stream=False)


@pytest.mark.parametrize(
    ("fields", "user_id"),
    [
        ({"user": "u1", "metadata": {"user": "m"}}, "u1"),
        ({"safety_identifier": "s1"}, "s1"),
        ({"metadata": {"user": "m1", "other": "x"}}, "m1"),
        ({"metadata": {"user_id": "m2"}}, "m2"),
        ({"metadata": {"other": "x"}}, None),
        ({}, None),
    ],
)
def test_end_user_id_becomes_metadata_user_id(fields: dict[str, Any], user_id: str | None) -> None:
    out = translate(messages(user("q"), **fields))
    assert out.get("metadata") == (None if user_id is None else {"user_id": user_id})
