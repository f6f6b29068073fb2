"""The ledger invariants of DESIGN §8 under concurrent load and client disconnects."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import httpx

from ai_service.billing.estimate import REQUEST_ALLOWANCE
from ai_service.services import catalog_admin
from tests.fakes.behaviours import Answer
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

CHAT = "/ai/openai/chat/completions"


def price_test_model(gateway: Gateway) -> None:
    """A model at $100 / 1M tokens in and out: a request of ~8 tokens costs ~$0.0008."""
    gateway.session(
        lambda s: catalog_admin.set_price(s, "openai", "test-model", input="100", output="100")
    )
    gateway.state.catalog._loaded_at = 0.0  # the next request re-reads the catalog


async def fire(url: str, key: str, count: int, stream_every: int = 3) -> list[int]:
    body = {"model": "test-model", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    connector = aiohttp.TCPConnector(limit=count)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> int:
            payload = {**body, "stream": i % stream_every == 0}
            async with session.post(url + CHAT, json=payload, headers={"X-API-Key": key}) as r:
                await r.read()
                return r.status

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_200_concurrent_requests_never_overdraw_and_reconcile_exactly(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    price_test_model(gateway)
    # one answer: prompt 1 word + 3 = 4 tokens, "Hello from openai!" = 3 tokens -> 7 tokens = $0.0007
    key = gateway.create_user("crowd", "0.035")
    statuses = asyncio.run(fire(gateway.url, key, 200))
    gateway.wait_settled()
    assert set(statuses) <= {200, 402}
    assert statuses.count(200) >= 1
    # reservations in flight make some requests of the storm 402 early; the balance is
    # then spent to its end one request at a time
    while asyncio.run(fire(gateway.url, key, 1)) == [200]:
        statuses.append(200)
    ok = statuses.count(200)
    # $0.035 pays for 50 answers of $0.0007; the last (streamed) reservation bounds its
    # prompt by the bytes of the body sent upstream, plus the allowances, and 8 output tokens
    streamed = next(r for r in reversed(openai_upstream.requests) if r.body.get("stream"))
    prompt = len(streamed.raw) + gateway.state.settings.message_token_allowance
    last = (prompt + REQUEST_ALLOWANCE + 8) * 100_000
    available, reserved = gateway.balance("crowd")
    assert available < last
    assert (35_000_000 - last) // 700_000 <= ok <= 50, statuses
    assert available >= 0 and reserved == 0
    assert gateway.reconcile() == []
    rows = gateway.requests()
    served = [r for r in rows if r.status == "ok"]
    assert len(served) == ok
    # every request that reached the upstream has exactly one row, settled and charged
    assert len(openai_upstream.requests) == ok
    assert sum(r.cost for r in served) == 35_000_000 - available
    assert all(r.cost > 0 for r in served)
    refused = [r for r in rows if r.http_status == 402]
    assert len(refused) == len(rows) - ok
    assert all(r.cost == 0 for r in refused)
    assert gateway.scalar("SELECT min(usd_available) FROM api_users") >= 0


def test_client_disconnect_mid_stream_is_one_cancelled_row_with_a_charge(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("leaver", "10")
    words = " ".join(f"word{i}" for i in range(200))
    openai_upstream.enqueue(Answer(text=words, chunk_delay=0.05))
    body = {
        "model": "gpt-5.4-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "long answer please"}],
    }
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", gateway.url + CHAT, json=body, headers={"X-API-Key": key}) as r,
    ):
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                seen += 1
            if seen >= 3:
                break
    started = time.monotonic()
    (upstream,) = openai_upstream.requests
    assert upstream.wait_done(5)
    assert time.monotonic() - started < 2, "the upstream request was not cancelled at once"
    assert upstream.disconnected and not upstream.completed
    assert upstream.chunks_sent < 100
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert row.status == "cancelled"
    assert row.cost > 0
    assert row.usage_estimated is True
    assert row.completion_tokens > 0
    available, reserved = gateway.balance("leaver")
    assert reserved == 0
    assert available == 10_000_000_000 - row.cost
    assert gateway.reconcile() == []
