"""FakeAnthropic's token counting and cache TTL usage, proven with the official SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.fakes import Answer, ErrorReply, FakeAnthropic, Usage

from .clients import HI, KEY, post_path

WEATHER: Any = {"name": "get_weather", "input_schema": {"type": "object"}}


def test_count_matches_the_billed_input_of_messages(
    anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    counted = claude.messages.count_tokens(
        model="claude-x", system="Be brief.", messages=HI, tools=[WEATHER]
    )
    assert counted.input_tokens == (3 + 2) + (3 + 2) + 346  # system, message, tool prompt
    message = claude.messages.create(
        model="claude-x", max_tokens=50, system="Be brief.", messages=HI, tools=[WEATHER]
    )
    assert message.usage.input_tokens == counted.input_tokens
    forced = claude.messages.count_tokens(
        model="claude-x", messages=HI, tools=[WEATHER], tool_choice={"type": "any"}
    )
    assert forced.input_tokens == 5 + 313
    plain = claude.messages.count_tokens(model="claude-x", messages=HI)
    assert plain.input_tokens == 5
    record = anthropic_fake.last_request
    assert (record.method, record.path) == ("POST", "/v1/messages/count_tokens")
    assert record.body == {"model": "claude-x", "messages": HI}
    assert record.headers["anthropic-version"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"model": "c", "messages": HI, "max_tokens": 5},
            "max_tokens: Extra inputs are not permitted",
        ),
        ({"model": "c", "messages": HI, "stream": True}, "stream: Extra inputs are not permitted"),
        ({"model": "c"}, "messages: Field required"),
        ({"messages": HI}, "model: Field required"),
        (
            {"model": "c", "messages": [{"role": "system", "content": "x"}]},
            'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
            'parameter, not "system" as an input message role.',
        ),
    ],
)
def test_count_rejections(
    anthropic_fake: FakeAnthropic, body: dict[str, Any], message: str
) -> None:
    response = post_path(anthropic_fake, "/v1/messages/count_tokens", body)
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "x-api-key header is required"),
        ({"x-api-key": "wrong", "anthropic-version": "2023-06-01"}, 401, "invalid x-api-key"),
        ({"x-api-key": KEY}, 400, "anthropic-version: header is required"),
    ],
)
def test_count_checks_headers(
    anthropic_fake: FakeAnthropic, headers: dict[str, str], status: int, message: str
) -> None:
    body = {"model": "c", "messages": HI}
    response = post_path(anthropic_fake, "/v1/messages/count_tokens", body, headers)
    assert response.status_code == status
    assert response.json()["error"]["message"] == message


def test_count_takes_queued_behaviours(
    anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    anthropic_fake.enqueue(ErrorReply(529), Answer(usage=Usage(prompt_tokens=1234)))
    with pytest.raises(anthropic.InternalServerError):
        claude.messages.count_tokens(model="c", messages=HI)
    assert claude.messages.count_tokens(model="c", messages=HI).input_tokens == 1234


def test_cache_writes_are_split_by_ttl(
    anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic
) -> None:
    usage = Usage(cache_creation_tokens=300, cache_1h_tokens=100, cached_tokens=50)
    anthropic_fake.enqueue(Answer(usage=usage), Answer(usage=usage))
    message = claude.messages.create(model="c", max_tokens=50, messages=HI)
    assert message.usage.cache_creation_input_tokens == 300
    assert message.usage.cache_read_input_tokens == 50
    assert message.usage.cache_creation is not None
    assert message.usage.cache_creation.ephemeral_5m_input_tokens == 200
    assert message.usage.cache_creation.ephemeral_1h_input_tokens == 100
    with claude.messages.stream(model="c", max_tokens=50, messages=HI) as stream:
        start = next(e for e in stream if e.type == "message_start")
        final = stream.get_final_message()
    assert start.message.usage.cache_creation is not None
    assert start.message.usage.cache_creation.ephemeral_1h_input_tokens == 100
    assert final.usage.cache_creation_input_tokens == 300
