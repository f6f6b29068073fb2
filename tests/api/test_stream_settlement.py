"""Streams settle, always: clients that leave at a precise moment, over real sockets.

Each client is a raw asyncio connection that sends one streaming request, reads
the answer until a given frame arrived, and closes the connection then. The
fakes' `first_delay` / `done_delay` hold the upstream stream at the moment the
close must land (before the first content chunk; between the usage and the
stream's terminator).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from ai_service.billing import tokens
from ai_service.billing.pricing import cost
from ai_service.billing.tokens import OPENAI_ENCODING, count_tokens
from ai_service.providers.base import Usage
from tests.fakes.anthropic_messages import FakeAnthropic
from tests.fakes.behaviours import Answer
from tests.fakes.openai_flavours import FakeOpenAI
from tests.fakes.tokens import PER_MESSAGE, count_words
from tests.support.gateway import Gateway
from tests.support.invariants import Books

CLAUDE_KEY = "sk-ant-upstream-test"
CLAUDE_MODEL = "claude-3-5-sonnet-20241022"
OPENAI_MODEL = "gpt-5.4-mini"
PROMPT = "Tell me a long story about the sea and the ships that sail on it"
PROMPT_TOKENS = PER_MESSAGE + count_words(PROMPT)  # what the fakes report


@pytest.fixture(autouse=True, scope="module")
def tokenizer() -> None:
    """Loaded, as in a gateway past its first seconds (it loads in a thread at startup)."""
    assert tokens.load()


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=CLAUDE_KEY) as fake:
        yield fake


@pytest.fixture
def claude(gateway_factory: Callable[..., Gateway], anthropic_fake: FakeAnthropic) -> Gateway:
    anthropic_fake.reset()
    return gateway_factory(anthropic_api_key=CLAUDE_KEY, anthropic_base_url=anthropic_fake.base_url)


def body(model: str, usage: bool = True) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    if usage:
        request["stream_options"] = {"include_usage": True}
    return request


async def stream_until(
    gw: Gateway, path: str, key: str, request: dict[str, Any], stop: Callable[[bytes], bool]
) -> bytes:
    """Send `request`, read until `stop(received)` holds, then close the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    payload = orjson.dumps(request)
    head = (
        f"POST /ai/{path}/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await writer.drain()
    received = b""
    try:
        async with asyncio.timeout(10):
            while not stop(received):
                piece = await reader.read(65536)
                if not piece:
                    break
                received += piece
    finally:
        writer.close()
    return received


def first_frame(received: bytes) -> bool:
    return b"data: " in received


def usage_frame(received: bytes) -> bool:
    return b'"prompt_tokens"' in received


def reported_usage(received: bytes) -> dict[str, Any]:
    """The usage object of the stream's usage chunk."""
    for line in received.split(b"\n"):
        if line.startswith(b"data: {") and b'"prompt_tokens"' in line:
            usage: dict[str, Any] = orjson.loads(line[6:])["usage"]
            assert usage["prompt_tokens"] == PROMPT_TOKENS
            return usage
    raise AssertionError("no usage chunk")


def wait_settled(gw: Gateway, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while gw.scalar("SELECT count(*) FROM api_requests WHERE status = 'pending'"):
        if time.monotonic() > deadline:
            raise AssertionError("requests still pending")
        time.sleep(0.02)


def test_claude_stream_closed_before_its_first_chunk_pays_the_reported_prompt(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")[0]
    anthropic_fake.enqueue(Answer(text="one two three four", first_delay=1))
    received = asyncio.run(stream_until(claude, "claude", key, body(CLAUDE_MODEL), first_frame))
    assert b'"role":"assistant"' in received and b"one" not in received
    wait_settled(claude)
    (row,) = claude.requests()
    assert (row.status, row.http_status) == ("cancelled", 499)
    # message_start reported the prompt (and 1 output token so far): charged as reported
    assert (row.prompt_tokens, row.completion_tokens) == (PROMPT_TOKENS, 1)
    assert row.usage_estimated is False
    price = claude.state.catalog.current.resolve("claude", CLAUDE_MODEL).price
    expected = cost(Usage(input_tokens=PROMPT_TOKENS, output_tokens=1), price)
    assert row.cost == expected > 0
    assert claude.balance("alice") == (before - expected, 0)
    assert claude.reconcile() == []


def test_claude_stream_closed_after_its_final_counts_pays_them_exactly(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    anthropic_fake.enqueue(Answer(text="one two three four", done_delay=1))
    # message_delta (the finish reason, the final counts) arrived; message_stop did not
    received = asyncio.run(
        stream_until(
            claude, "claude", key, body(CLAUDE_MODEL, usage=False), lambda r: b'"stop"' in r
        )
    )
    assert b"[DONE]" not in received
    wait_settled(claude)
    (row,) = claude.requests()
    assert (row.status, row.http_status) == ("cancelled", 499)
    assert (row.prompt_tokens, row.completion_tokens) == (PROMPT_TOKENS, 4)
    assert row.usage_estimated is False
    price = claude.state.catalog.current.resolve("claude", CLAUDE_MODEL).price
    assert row.cost == cost(Usage(input_tokens=PROMPT_TOKENS, output_tokens=4), price)
    assert claude.reconcile() == []


def test_openai_stream_closed_before_its_first_chunk_pays_an_estimated_prompt(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    before = gateway.balance("alice")[0]
    openai_upstream.enqueue(Answer(text="one two three four", first_delay=1))
    received = asyncio.run(stream_until(gateway, "openai", key, body(OPENAI_MODEL), first_frame))
    assert b'"role":"assistant"' in received and b"one" not in received
    wait_settled(gateway)
    (row,) = gateway.requests()
    assert (row.status, row.http_status) == ("cancelled", 499)
    assert row.usage_estimated is True
    # the prompt's text counted with the model's tokenizer, plus the message overheads
    text_tokens = count_tokens(PROMPT, OPENAI_ENCODING)
    assert text_tokens < row.prompt_tokens <= text_tokens + 8
    assert row.completion_tokens == 0
    price = gateway.state.catalog.current.resolve("openai", OPENAI_MODEL).price
    expected = cost(Usage(input_tokens=row.prompt_tokens), price)
    assert row.cost == expected > 0
    assert gateway.balance("alice") == (before - expected, 0)
    assert gateway.reconcile() == []


def test_streams_closed_between_usage_and_done_settle_at_the_reported_usage(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "100")
    before = gateway.balance("alice")[0]
    delays = (0.0, 0.0, 0.0, 0.005, 0.02)
    count = 50
    openai_upstream.enqueue(
        *[Answer(text="one two three", done_delay=delays[i % len(delays)]) for i in range(count)]
    )

    async def run() -> list[bytes]:
        limit = asyncio.Semaphore(10)

        async def one() -> bytes:
            async with limit:
                return await stream_until(gateway, "openai", key, body(OPENAI_MODEL), usage_frame)

        return await asyncio.gather(*(one() for _ in range(count)))

    answers = asyncio.run(run())
    assert all(usage_frame(a) for a in answers)
    wait_settled(gateway)  # within seconds, none left pending
    rows = gateway.requests()
    assert len(rows) == count
    reported = {reported_usage(a)["completion_tokens"] for a in answers}
    assert len(reported) == 1  # the same answer each time
    completion = reported.pop()
    price = gateway.state.catalog.current.resolve("openai", OPENAI_MODEL).price
    expected = cost(Usage(input_tokens=PROMPT_TOKENS, output_tokens=completion), price)
    for row in rows:
        assert row.status in ("ok", "cancelled"), row.status
        assert (row.prompt_tokens, row.completion_tokens) == (PROMPT_TOKENS, completion)
        assert row.usage_estimated is False
        assert row.cost == expected > 0
    assert gateway.balance("alice") == (before - count * expected, 0)
    assert gateway.reconcile() == []


def test_cjk_stream_cancelled_before_usage_estimates_at_least_the_true_tokens(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    words = ["東京の天気は晴れです", "今日はとても良い日ですね", "明日も晴れるでしょう"]
    text = " ".join(words * 4)
    openai_upstream.enqueue(Answer(text=text, chunk_delay=0.2))
    marker = words[1].encode()

    received = asyncio.run(
        stream_until(gateway, "openai", key, body(OPENAI_MODEL), lambda r: marker in r)
    )
    assert b'"prompt_tokens"' not in received
    wait_settled(gateway)
    (row,) = gateway.requests()
    assert row.status == "cancelled" and row.usage_estimated is True
    delivered = text[: text.index(words[1]) + len(words[1])]
    true_tokens = count_tokens(delivered, OPENAI_ENCODING)
    assert true_tokens > len(delivered) // 4  # what characters / 4 would have charged
    assert row.completion_tokens >= true_tokens
    assert gateway.reconcile() == []


def test_stream_cut_by_a_shutdown_is_settled_before_the_process_ends(
    gateway: Gateway, openai_upstream: FakeOpenAI, db_url: str
) -> None:
    key = gateway.create_user("alice", "10")
    before = gateway.balance("alice")[0]
    openai_upstream.enqueue(Answer(text="one two three four five six seven", chunk_delay=0.5))
    gateway.server.config.timeout_graceful_shutdown = 0.2  # then the request task is cancelled

    async def scenario() -> bytes:
        reading = asyncio.ensure_future(
            stream_until(gateway, "openai", key, body(OPENAI_MODEL), lambda r: b"[DONE]" in r)
        )
        await asyncio.sleep(0.8)  # two chunks delivered, the third on its way
        await asyncio.to_thread(gateway.stop)
        return await reading

    received = asyncio.run(scenario())
    assert b"[DONE]" not in received and b" two" in received
    books = Books(db_url)  # the gateway is gone: its database, read directly
    (row,) = books.rows()
    assert (row.status, row.http_status) == ("cancelled", 499)
    assert row.completion_tokens >= 2 and row.prompt_tokens > 0 and row.usage_estimated
    assert row.cost > 0
    assert books.balance("alice") == (before - row.cost, 0)
    assert books.violations() == []
