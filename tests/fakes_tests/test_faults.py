"""Scripted faults: what an official SDK client sees, and what the fake records."""

from __future__ import annotations

import itertools
import time

import anthropic
import httpx
import httpx2
import openai
import pytest

from tests.fakes import (
    Answer,
    ErrorReply,
    FakeAnthropic,
    FakeOpenAI,
    FakeServer,
    Hang,
    Malformed,
    ResetConnection,
    WrongContentType,
)

from .clients import HI, KEY, anthropic_client, collect_text, first_text, openai_client, post
from .test_openai_flavours import OPENAI_SHAPED


def test_429_with_retry_after(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    openai_fake.enqueue(ErrorReply(429, retry_after=7))
    with pytest.raises(openai.RateLimitError) as caught:
        oai.chat.completions.create(model="gpt-4o", messages=HI)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    assert set(caught.value.response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors(openai_fake: FakeOpenAI, oai: openai.OpenAI, status: int) -> None:
    openai_fake.enqueue(ErrorReply(status))
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(model="gpt-4o", messages=HI)
    assert caught.value.status_code == status
    assert caught.value.response.json()["error"]["type"] == "server_error"


def test_anthropic_429_body(anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic) -> None:
    anthropic_fake.enqueue(ErrorReply(429, retry_after=2))
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model="c", max_tokens=5, messages=HI)
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.response.json()["error"]["type"] == "rate_limit_error"


def test_verbatim_error_body(openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(ErrorReply(418, body={"weird": True}, headers={"X-Extra": "1"}))
    response = post(openai_fake, {"model": "gpt-4o", "messages": HI})
    assert (response.status_code, response.json()) == (418, {"weird": True})
    assert response.headers["x-extra"] == "1"


def test_behaviours_are_served_in_fifo_order(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    openai_fake.enqueue(ErrorReply(503), Answer(text="second"))
    assert openai_fake.pending == 2
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="gpt-4o", messages=HI)
    second = oai.chat.completions.create(model="gpt-4o", messages=HI)
    third = oai.chat.completions.create(model="gpt-4o", messages=HI)
    assert second.choices[0].message.content == "second"
    assert third.choices[0].message.content == "Hello from openai!"
    assert [r.status for r in openai_fake.requests] == [503, 200, 200]
    openai_fake.enqueue(ErrorReply(500))
    openai_fake.reset()
    assert openai_fake.pending == 0


def test_invalid_requests_do_not_consume_the_queue(openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(ErrorReply(503))
    assert post(openai_fake, {"model": "gpt-4o", "messages": HI}, headers={}).status_code == 401
    assert post(openai_fake, {"model": "gpt-4o", "messages": HI}).status_code == 503


def test_hang_times_out_the_client_and_is_seen(openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(Hang(5))
    started = time.monotonic()
    with openai_client(openai_fake, timeout=0.3) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert time.monotonic() - started < 2
    record = openai_fake.last_request
    assert record.wait_done(2)
    assert record.disconnected
    assert record.status is None


def test_hang_then_answer(anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic) -> None:
    anthropic_fake.enqueue(Hang(0.3, then=Answer(text="late")))
    started = time.monotonic()
    message = claude.messages.create(model="c", max_tokens=5, messages=HI)
    assert time.monotonic() - started >= 0.3
    assert first_text(message) == "late"


@pytest.mark.parametrize("fake_class", OPENAI_SHAPED)
def test_cut_stream_after_n_chunks(fake_class: type[FakeServer]) -> None:
    with fake_class("k") as fake:
        fake.enqueue(Answer(text="one two three four", cut_after=2))
        received: list[str] = []
        with openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as client:
            stream = client.chat.completions.create(model="m", messages=HI, stream=True)
            with pytest.raises(openai.APIConnectionError):
                collect_text(stream, received)
        assert "".join(received) == "one two"
        record = fake.last_request
        assert record.wait_done()
        assert (record.cut, record.chunks_sent, record.completed) == (True, 2, False)


def test_cut_anthropic_stream(anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic) -> None:
    anthropic_fake.enqueue(Answer(cut_after=1))
    texts: list[str] = []
    with (
        pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"),
        claude.messages.stream(model="c", max_tokens=50, messages=HI) as stream,
    ):
        texts.extend(stream.text_stream)
    assert texts == ["Hello"]


def test_drip_spaces_the_chunks(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    openai_fake.enqueue(Answer(text="a b c", chunk_delay=0.15))
    arrivals = []
    for chunk in oai.chat.completions.create(model="gpt-4o", messages=HI, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(gaps) == 2
    assert all(gap >= 0.12 for gap in gaps)


@pytest.mark.parametrize("fake_class", [FakeOpenAI, FakeAnthropic])
def test_client_disconnect_is_recorded_at_once(fake_class: type[FakeServer]) -> None:
    with fake_class("k") as fake:
        fake.enqueue(Answer(text="a b c d e f", chunk_delay=1.0))
        body = (
            {"model": "m", "max_tokens": 50, "messages": HI, "stream": True}
            if fake_class is FakeAnthropic
            else {"model": "m", "messages": HI, "stream": True}
        )
        headers = {"x-api-key": "k", "anthropic-version": "1", "Authorization": "Bearer k"}
        url = fake.base_url + (
            "/v1/messages" if fake_class is FakeAnthropic else "/chat/completions"
        )
        # plain http on loopback; verify=False only skips loading the CA bundle
        with httpx.stream("POST", url, json=body, headers=headers, verify=False) as response:  # noqa: S501
            for line in response.iter_lines():
                if '"a"' in line:
                    break
        closed = time.monotonic()
        record = fake.last_request
        assert record.wait_done(0.8)
        assert time.monotonic() - closed < 0.8
        assert (record.disconnected, record.chunks_sent, record.completed) == (True, 1, False)


def test_in_stream_error_for_openai(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    openai_fake.enqueue(Answer(error_after=2, error=ErrorReply(500, "boom")))
    received: list[str] = []
    stream = oai.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
    with pytest.raises(openai.APIError, match="boom"):
        collect_text(stream, received)
    assert "".join(received) == "Hello from"


def test_keepalive_comments_are_ignored_by_the_sdk(
    openai_fake: FakeOpenAI, oai: openai.OpenAI
) -> None:
    openai_fake.enqueue(Answer(keepalive=3))
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from openai!"
    assert openai_fake.last_request.completed


def test_malformed_json_body(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    openai_fake.enqueue(Malformed())
    with pytest.raises(ValueError, match="Expecting"):
        oai.chat.completions.create(model="gpt-4o", messages=HI)


def test_malformed_stream_event(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    openai_fake.enqueue(Malformed(after_chunks=1))
    received: list[str] = []
    stream = oai.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
    with pytest.raises(ValueError, match="Expecting"):
        collect_text(stream, received)
    assert "".join(received) == "Hello"


def test_wrong_content_type(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    openai_fake.enqueue(WrongContentType(), WrongContentType(status=502))
    result = oai.chat.completions.create(model="gpt-4o", messages=HI)
    assert isinstance(result, str)
    assert "<html>" in result
    response = post(openai_fake, {"model": "gpt-4o", "messages": HI})
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")


def test_reset_connection(anthropic_fake: FakeAnthropic, claude: anthropic.Anthropic) -> None:
    anthropic_fake.enqueue(ResetConnection())
    with pytest.raises(anthropic.APIConnectionError):
        claude.messages.create(model="c", max_tokens=5, messages=HI)
    record = anthropic_fake.last_request
    assert record.wait_done()
    assert (record.cut, record.status) == (True, None)


def test_fixed_delay_option() -> None:
    with FakeOpenAI(KEY, delay=0.25) as fake, openai_client(fake) as client:
        started = time.monotonic()
        client.chat.completions.create(model="gpt-4o", messages=HI)
        assert time.monotonic() - started >= 0.25


def test_anthropic_client_helper_targets_the_fake() -> None:
    with FakeAnthropic(KEY) as fake, anthropic_client(fake) as client:
        assert client.messages.create(model="c", max_tokens=1, messages=HI).content
