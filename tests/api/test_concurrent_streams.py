"""Many streams through one gateway, and the queues they may wait in (issue 16).

Every test talks to a real gateway (uvicorn on loopback) in front of the fake
OpenAI server, which counts the streams it has open and can hold them open
(`FakeServer.hold`), so "at the same moment" is a fact the fake observes, not
a timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from ai_service.fdlimit import raise_open_files
from tests.conftest import UPSTREAM_KEY
from tests.fakes.behaviours import Answer
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

CHAT = "/ai/openai/chat/completions"
BODY = {
    "model": "gpt-5.4-mini",
    "messages": [{"role": "user", "content": "Say hello."}],
    "stream": True,
    "max_tokens": 16,
}


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll `condition` until it holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def stream(
    session: aiohttp.ClientSession, gw: Gateway, key: str
) -> tuple[int, bytes, dict[str, str]]:
    """One chat request: its status, whole body and headers."""
    async with session.post(gw.url + CHAT, json=BODY, headers={"X-API-Key": key}) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


def client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=300)
    )


def sample(gw: Gateway, name: str, **labels: str) -> float:
    value = gw.state.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def settled(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "request settled"]


def limited(
    factory: Callable[..., Gateway],
    fake: FakeOpenAI,
    limit: int | None = None,
    timeout: float = 5.0,
    **settings: Any,
) -> Gateway:
    """A gateway in front of `fake` with `limit` connections to it, waited for `timeout`.

    Its streams may stay silent as long as the test holds them (on a loaded
    machine, opening hundreds takes longer than the tests' usual 5 s).
    """
    return factory(
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=fake.base_url,
        upstream_max_connections=limit,
        upstream_queue_timeout=timeout,
        first_byte_timeout=600,
        stream_idle_timeout=600,
        **settings,
    )


async def occupy(
    session: aiohttp.ClientSession, gw: Gateway, key: str, fake: FakeOpenAI, n: int
) -> list[asyncio.Future[tuple[int, bytes, dict[str, str]]]]:
    """`n` streams, held open at the fake once they are all open there."""
    fake.hold()
    calls = [asyncio.ensure_future(stream(session, gw, key)) for _ in range(n)]
    await wait_for(lambda: fake.streams_open == n, f"{n} open streams")
    return calls


@pytest.fixture
def fds() -> int:
    """The test process serves both ends of every stream: four sockets each."""
    limit = raise_open_files()
    if limit < 4096:
        pytest.skip(f"the open-file limit ({limit}) is too low for 600 streams")
    return limit


async def test_600_streams_are_open_at_the_upstream_at_the_same_moment(
    fds: int, gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> None:
    gateway = limited(gateway_factory, openai_upstream)
    key = gateway.create_user("many", balance="1000")
    openai_upstream.hold()
    async with client() as session:
        calls = [asyncio.ensure_future(stream(session, gateway, key)) for _ in range(600)]
        try:
            await wait_for(lambda: openai_upstream.streams_open == 600, "600 open streams")
        finally:
            ended = Counter(c.result()[0] for c in calls if c.done() and not c.exception())
            assert not ended, f"{openai_upstream.streams_open} open; answered early: {ended}"
            openai_upstream.release()
        answers = await asyncio.gather(*calls)
    assert openai_upstream.streams_peak == 600
    assert [status for status, _, _ in answers] == [200] * 600
    assert all(body.endswith(b"data: [DONE]\n\n") for _, body, _ in answers)
    gateway.wait_settled(60)
    rows = gateway.requests()
    assert len(rows) == 600
    assert {r.status for r in rows} == {"ok"}
    assert sample(gateway, WAITED, queue="upstream") == 0  # no request waited for a connection


async def test_a_wait_for_a_host_connection_is_measured_logged_and_recorded(
    gateway_factory: Callable[..., Gateway],
    openai_upstream: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ai_service.request")
    gw = limited(gateway_factory, openai_upstream, 3, 120)
    key = gw.create_user("queued", balance="100")
    async with client() as session:
        first = await occupy(session, gw, key, openai_upstream, 3)
        try:
            last = asyncio.ensure_future(stream(session, gw, key))
            await wait_for(
                lambda: sample(gw, "ai_service_queue_waiting", queue="upstream") == 1,
                "a request waiting for a connection",
            )
            assert len(openai_upstream.requests) == 3  # the fourth is held at the gateway
        finally:
            openai_upstream.release()
        answers = await asyncio.gather(*first, last)
    assert [status for status, _, _ in answers] == [200] * 4
    gw.wait_settled()
    queued = [r.queue_ms or 0 for r in gw.requests()]
    waited = sample(gw, "ai_service_queue_wait_seconds_sum", queue="upstream")
    assert sample(gw, WAITED, queue="upstream") == 1
    assert waited > 0
    # the row's queue_ms: the upstream wait and any wait for the database's next statement
    assert queued[-1] >= round(waited * 1000)
    assert queued[-1] > 0
    assert sample(gw, WAITING, queue="upstream") == 0
    assert sorted(getattr(r, "queue_ms", None) for r in settled(caplog)) == sorted(queued)


async def test_a_wait_past_its_bound_is_a_503_that_costs_nothing(
    gateway_factory: Callable[..., Gateway],
    openai_upstream: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ai_service.request")
    gw = limited(gateway_factory, openai_upstream, 2, 0.2)
    key = gw.create_user("refused", balance="100")
    async with client() as session:
        first = await occupy(session, gw, key, openai_upstream, 2)
        try:
            await wait_for(lambda: gw.balance("refused")[1] > 0, "the first reservations")
            before = gw.balance("refused")
            status, body, headers = await stream(session, gw, key)
            await wait_for(lambda: gw.balance("refused") == before, "the refusal's release")
        finally:
            openai_upstream.release()
        answers = await asyncio.gather(*first)
    assert status == 503
    error = orjson.loads(body)["error"]
    assert error["type"] == "service_unavailable"
    assert error["code"] == "upstream_busy"
    assert "2 connections to the openai provider" in error["message"]
    assert headers["Retry-After"] == "1"
    assert [s for s, _, _ in answers] == [200, 200]
    assert len(openai_upstream.requests) == 2  # the refused request never reached it
    gw.wait_settled()
    refused = gw.requests(http_status=503)
    assert len(refused) == 1
    assert refused[0].status == "error"
    assert refused[0].cost == 0
    assert refused[0].queue_ms is not None
    assert refused[0].queue_ms >= 200
    assert gw.balance("refused")[1] == 0
    assert sample(gw, "ai_service_queue_wait_seconds_count", queue="upstream") == 1
    lines = [r for r in settled(caplog) if getattr(r, "http_status", None) == 503]
    assert len(lines) == 1
    assert lines[0].__dict__["queue_ms"] == refused[0].queue_ms


WORD = "x" * 8191 + " "  # one stream chunk of 8 KiB of text


def test_a_client_that_does_not_read_holds_back_the_upstream(
    fds: int, gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    """64 MiB streamed at a client that reads nothing: the gateway stops reading the
    upstream once the sockets' buffers are full, instead of buffering the stream."""
    chunks = 8192
    key = gateway.create_user("slow", balance="1000")
    openai_upstream.enqueue(Answer(text=WORD * chunks, chunk_delay=1e-6))
    body = orjson.dumps({k: v for k, v in BODY.items() if k != "max_tokens"})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", gateway.port))
    try:
        sock.sendall(
            f"POST {CHAT} HTTP/1.1\r\nHost: gw\r\nX-API-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        sent = stalled(openai_upstream)
        # in flight: the four sockets' kernel buffers (7-8 MiB seen on Linux loopback)
        assert sent < chunks // 4, "the gateway read the upstream's stream without the client"
    finally:
        sock.close()
    gateway.wait_settled(30)
    (row,) = gateway.requests()
    assert row.status == "cancelled"


def stalled(fake: FakeOpenAI) -> int:
    """The chunks the fake has sent once its stream stopped progressing (or ended)."""
    deadline = time.monotonic() + 120
    last, same = -1, 0
    while time.monotonic() < deadline:
        record: Any = fake.requests[-1] if fake.requests else None
        sent = record.chunks_sent if record is not None else 0
        if record is not None and record.completed:
            return int(sent)
        same = same + 1 if sent == last else 0
        if same >= 25:  # no progress for half a second: the sockets' buffers are full
            return int(sent)
        last = sent
        time.sleep(0.02)
    raise AssertionError("the stream neither stalled nor ended")


@contextlib.asynccontextmanager
async def balance_locked(db_url: str, user: str) -> AsyncIterator[Probe | None]:
    """Hold the write lock a reservation of `user` needs (SQLite: the database's; PostgreSQL:
    the user's row); yields whether a statement waits for it (PostgreSQL; SQLite: None)."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield None
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(db_url)
    try:
        tx = pg.transaction()
        await tx.start()
        await pg.execute("SELECT 1 FROM api_users WHERE name = $1 FOR NO KEY UPDATE", user)

        async def blocked() -> bool:
            return bool(await pg.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"))

        yield blocked
        await tx.rollback()
    finally:
        await pg.close()


Probe = Callable[[], Awaitable[bool]]
WAITED = "ai_service_queue_wait_seconds_count"
WAITING = "ai_service_queue_waiting"


async def test_a_reservation_that_waits_past_its_bound_for_the_database_is_a_503(
    db_url: str,
    gateway_factory: Callable[..., Gateway],
    openai_upstream: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ai_service.request")
    gw = limited(
        gateway_factory,
        openai_upstream,
        database_queue_timeout=0.3,
        key_cache_seconds=300,  # SQLite: no read of the key while the database is locked
        catalog_refresh_seconds=300,
    )
    key = gw.create_user("db", balance="100")
    async with client() as session:
        assert (await stream(session, gw, key))[0] == 200  # the key and prices cached
        gw.wait_settled()
        base = sample(gw, WAITED, queue="database")
        async with balance_locked(db_url, "db") as blocked:
            first = asyncio.ensure_future(stream(session, gw, key))
            # the first reservation is in its statement, waiting for the lock
            if blocked is not None:
                await wait_for_async(blocked, "a statement waiting for the lock")
            else:  # SQLite's statements all pass through the queue
                await wait_for(
                    lambda: (
                        sample(gw, WAITED, queue="database") == base + 1
                        and sample(gw, WAITING, queue="database") == 0
                    ),
                    "the first reservation out of the queue",
                )
            taken = sample(gw, WAITED, queue="database")
            second = asyncio.ensure_future(stream(session, gw, key))
            # the second waits its bound in the queue behind it, and leaves it
            await wait_for(
                lambda: (
                    sample(gw, WAITED, queue="database") > taken
                    and sample(gw, WAITING, queue="database") == 0
                ),
                "the second reservation to give up",
            )
            quick = sample(gw, "ai_service_queue_wait_seconds_bucket", queue="database", le="0.25")
            assert (quick, sample(gw, WAITED, queue="database")) == (taken, taken + 1)
        answers = await asyncio.gather(first, second)
    assert answers[0][0] == 200
    status, body, headers = answers[1]
    assert status == 503
    error = orjson.loads(body)["error"]
    assert (error["type"], error["code"]) == ("service_unavailable", "database_busy")
    assert headers["Retry-After"] == "1"
    gw.wait_settled()
    (refused,) = gw.requests(http_status=503)
    assert refused.status == "error"
    assert refused.reserved == 0
    assert refused.queue_ms is not None
    assert refused.queue_ms >= 300
    assert len(openai_upstream.requests) == 2
    assert gw.balance("db")[1] == 0
    lines = [r for r in caplog.records if r.getMessage() == "request refused"]
    assert [r.__dict__["queue_ms"] for r in lines] == [refused.queue_ms]


async def wait_for_async(condition: Probe, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
