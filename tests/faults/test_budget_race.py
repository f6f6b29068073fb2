"""A budget raced by two gateway processes on one PostgreSQL: many concurrent requests of
one key, spread over both instances, while the upstream takes its time. The budget pays
for exactly N worst cases: N are admitted, every other one is refused with 402, and what
was spent never passes the budget, to the nano-USD."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from ai_service.services import budget_admin
from tests.fakes.behaviours import Answer, Hang
from tests.faults.accounting import start_all
from tests.faults.conftest import Spawn
from tests.faults.plans import UPSTREAM_SENTINEL, chat_body
from tests.support.directed import DirectedOpenAI, new_nonce
from tests.support.invariants import Books

pytestmark = pytest.mark.slow

ADMITTED = 7  # the answers the budget pays for
REQUESTS = 60


@pytest.fixture
def slow_upstream() -> Iterator[DirectedOpenAI]:
    """Every answer waits 2 s: all the racing reservations are made while the first hold."""
    plans = {"ok": (Answer(),), "slow": (Hang(2.0, Answer()),)}
    with DirectedOpenAI(UPSTREAM_SENTINEL, plans=plans) as fake:
        yield fake


def test_two_instances_racing_a_budget_admit_exactly_what_it_pays_for(
    fresh_db: str, slow_upstream: DirectedOpenAI, spawn: Spawn
) -> None:
    books = Books(fresh_db)
    key = books.create_user("alice", "100")
    headers = {"Authorization": f"Bearer {key}"}
    a = spawn(fresh_db, slow_upstream, "gw-a", start=False, AI_SERVICE_FIRST_BYTE_TIMEOUT=10)
    b = spawn(fresh_db, slow_upstream, "gw-b", start=False, AI_SERVICE_FIRST_BYTE_TIMEOUT=10)
    start_all(a, b)
    # one request first: its reservation is every later one's (same body shape and limit)
    probe = httpx.post(
        a.url + "/ai/openai/chat/completions",
        headers=headers,
        json=chat_body("slow", new_nonce(), stream=False),
        timeout=30,
    )
    assert probe.status_code == 200, probe.text
    books.wait_settled(10)
    worst = int(books.scalar("SELECT reserved FROM api_requests"))
    first = int(books.scalar("SELECT cost FROM api_requests"))
    limit = first + ADMITTED * worst
    books.session(
        lambda s: budget_admin.set_budget(s, key_prefix=key[:12], period="day", limit=limit)
    )
    time.sleep(1.5)  # the instances' key caches (1 s here) now hold the key with its budget

    async def one(client: httpx.AsyncClient, n: int) -> int:
        url = (a if n % 2 else b).url + "/ai/openai/chat/completions"
        body = chat_body("slow", new_nonce(), stream=False)
        r = await client.post(url, headers=headers, json=body)
        await r.aread()
        return r.status_code

    async def race() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(one(client, n) for n in range(REQUESTS)))

    codes = asyncio.run(race())
    books.wait_settled(20)

    assert books.violations() == []
    assert sorted(set(codes)) == [200, 402], codes
    assert codes.count(200) == ADMITTED
    spent = int(books.scalar("SELECT coalesce(sum(cost), 0) FROM api_requests"))
    assert first < spent <= limit
    assert int(books.scalar("SELECT coalesce(sum(spent), 0) FROM api_spend_hourly")) == spent
    refused = books.all("SELECT error FROM api_requests WHERE http_status = 402")
    assert len(refused) == REQUESTS - ADMITTED
    assert all("this key's daily budget" in r[0] for r in refused)
    served_by = {
        r[0] for r in books.all("SELECT DISTINCT instance_id FROM api_requests WHERE cost > 0")
    }
    # both instances admitted some (an instance id is `name-<run suffix>`)
    assert {i.rsplit("-", 1)[0] for i in served_by} == {"gw-a", "gw-b"}
