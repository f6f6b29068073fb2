"""FakeServer lifecycle, thread safety and use from async code."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.fakes import FLAVOURS, Answer, FakeAnthropic, FakeOpenAI

from .clients import HI, KEY, openai_client, post


def test_start_and_stop_explicitly() -> None:
    fake = FakeOpenAI(KEY)
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.base_url
    assert fake.start() is fake
    port = int(fake.origin.rsplit(":", 1)[1])
    assert post(fake, {"model": "m", "messages": HI}).status_code == 200
    fake.stop()
    fake.stop()
    with pytest.raises(RuntimeError):
        _ = fake.base_url
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


def test_stop_does_not_wait_for_hung_requests() -> None:
    with FakeOpenAI(KEY) as fake, ThreadPoolExecutor(1) as pool:
        fake.enqueue(Answer(chunk_delay=30))
        future = pool.submit(post, fake, {"model": "m", "messages": HI, "stream": True})
        while not fake.requests or not fake.requests[0].chunks_sent:
            time.sleep(0.01)
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 2
        with pytest.raises(httpx.RemoteProtocolError):
            future.result(timeout=5)
    assert fake.requests[0].wait_done(1)
    assert not fake.requests[0].completed


def test_fakes_are_independent_servers() -> None:
    with FakeOpenAI(KEY) as one, FakeOpenAI(KEY) as two:
        assert one.base_url != two.base_url
        one.enqueue(Answer(text="first"))
        assert post(two, {"model": "m", "messages": HI}).json()["choices"][0]["message"][
            "content"
        ] == ("Hello from openai!")
        assert len(one.requests) == 0
        assert one.pending == 1


def test_concurrent_requests_are_all_recorded(openai_fake: FakeOpenAI) -> None:
    with ThreadPoolExecutor(8) as pool:
        bodies = [{"model": f"m{i}", "messages": HI} for i in range(40)]
        statuses = list(pool.map(lambda body: post(openai_fake, body).status_code, bodies))
    assert statuses == [200] * 40
    assert sorted(r.body["model"] for r in openai_fake.requests) == sorted(
        b["model"] for b in bodies
    )


async def test_async_sdk_client_works_from_another_loop(openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(Answer(text="async hello"))
    async with openai.AsyncOpenAI(
        base_url=openai_fake.base_url, api_key=KEY, max_retries=0
    ) as client:
        completion = await client.chat.completions.create(model="gpt-4o", messages=HI)
        stream = await client.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert completion.choices[0].message.content == "async hello"
    assert text == "Hello from openai!"


def test_flavour_registry_matches_gateway_paths() -> None:
    assert set(FLAVOURS) == {"openai", "claude", "mistral", "llama", "deepseek"}
    assert FLAVOURS["claude"] is FakeAnthropic
    with FLAVOURS["llama"](KEY) as fake, openai_client(fake) as client:
        assert client.chat.completions.create(model="m", messages=HI).choices
