"""Budgets: spend limits per period on keys and users, enforced in the reservation.

A request its budget cannot pay for is lowered (its output limit) or refused
with 402 naming the budget and when it resets, free and never sent; spend of an
earlier period does not count; a user's budget spans its keys; concurrent
requests never spend past a budget. Charges are the provider's bill, so a
budget is checked against worst cases and settled at what was billed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import text

from ai_service.billing.money import usd_to_nano
from ai_service.services import budget_admin
from tests.conftest import UPSTREAM_KEY
from tests.fakes.behaviours import Answer, Usage as FakeUsage
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

MODEL = "gpt-4.1"
ADMIN = "budget-admin-key-0123456789abcdef"


def sdk(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/ai/openai", api_key=key, max_retries=0)


def ask(gw: Gateway, key: str, max_tokens: int = 200) -> Any:
    return sdk(gw, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=max_tokens
    )


def set_budget(gw: Gateway, limit: str | int, period: str = "day", **scope: Any) -> int:
    """Set a budget of `limit` (USD as a string, or nano-USD)."""
    nano = usd_to_nano(limit) if isinstance(limit, str) else limit
    budget = gw.session(lambda s: budget_admin.set_budget(s, period=period, limit=nano, **scope))
    return budget.id


def spent(gw: Gateway) -> int:
    """What the settled requests cost, as the request log says."""
    return int(gw.scalar("SELECT coalesce(sum(cost), 0) FROM api_requests"))


def spend_rows(gw: Gateway) -> int:
    return int(gw.scalar("SELECT coalesce(sum(spent), 0) FROM api_spend_hourly"))


def test_a_key_budget_refuses_with_402_naming_it_free_and_never_sent(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    ask(gateway, key)
    first = gateway.requests()[0]
    set_budget(gateway, "0.000001", key_prefix=key[:12])  # less than one more answer
    sent_before = len(openai_upstream.requests)
    before = gateway.balance("alice")
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gateway, key)
    assert caught.value.status_code == 402
    message = caught.value.message
    assert "this key's daily budget of $0.000001 ($" in message
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    assert f"resets at {tomorrow}" in message
    assert len(openai_upstream.requests) == sent_before
    assert gateway.balance("alice") == before
    last = gateway.requests()[-1]
    assert (last.status, last.http_status, last.cost) == ("error", 402, 0)
    assert first.cost > 0 and spend_rows(gateway) == first.cost


def test_the_output_limit_is_lowered_to_what_the_budget_pays(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    ask(gateway, key, max_tokens=100)  # output at gpt-4.1's price: $8 per 1M tokens
    used = spent(gateway)
    # room for the prompt and about 300 output tokens, not for 4000
    set_budget(gateway, used + 300 * 8000, key_prefix=key[:12])
    ask(gateway, key, max_tokens=4000)
    sent = openai_upstream.last_request.body
    assert isinstance(sent, dict)
    limit = sent.get("max_completion_tokens") or sent.get("max_tokens")
    assert isinstance(limit, int) and 16 <= limit < 320
    assert spent(gateway) <= used + 300 * 8000 + used  # within the budget


def test_spend_of_an_earlier_period_does_not_count(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    ask(gateway, key)
    (row,) = gateway.requests()
    set_budget(gateway, "0.05", key_prefix=key[:12])
    # yesterday's spend, far over today's budget: not counted
    yesterday = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(
        days=1
    )
    gateway.session(lambda s: _add_spend(s, row.user_id, row.key_id, yesterday, 10**12))
    ask(gateway, key)
    # the same spend this hour counts
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    gateway.session(lambda s: _add_spend(s, row.user_id, row.key_id, now, 10**12))
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gateway, key)
    assert caught.value.status_code == 402


async def _add_spend(s: Any, user_id: int, key_id: int, hour: dt.datetime, cost: int) -> None:
    from ai_service.billing.sqlledger import add_spend

    await add_spend(await s.connection(), user_id, key_id, hour, cost)
    await s.commit()


@pytest.mark.parametrize(("hours_ago", "counted"), [(24, True), (25, False)])
def test_a_rolling_window_counts_whole_hours(
    gateway: Gateway, hours_ago: int, counted: bool
) -> None:
    key = gateway.create_user("alice", "10")
    ask(gateway, key)
    (row,) = gateway.requests()
    set_budget(gateway, "0.05", key_prefix=key[:12], rolling=True)
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    old = hour - dt.timedelta(hours=hours_ago)
    gateway.session(lambda s: _add_spend(s, row.user_id, row.key_id, old, 10**12))
    if counted:
        with pytest.raises(openai.APIStatusError) as caught:
            ask(gateway, key)
        assert "rolling daily budget" in caught.value.message
        assert "in the last 24 hours" in caught.value.message
    else:
        ask(gateway, key)


def test_a_user_budget_spans_its_keys_and_a_lifetime_limit_never_resets(
    gateway: Gateway,
) -> None:
    first = gateway.create_user("alice", "10")
    second = gateway.call(_second_key(gateway, "alice"))
    ask(gateway, first)
    used = spent(gateway)
    set_budget(gateway, used, period="month", user_name="alice")
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gateway, second)
    assert "this user's monthly budget" in caught.value.message
    budget_id = gateway.call(_budget_ids(gateway))[0]
    gateway.session(lambda s: budget_admin.remove_budget(s, budget_id))
    set_budget(gateway, used, period="total", key_prefix=first[:12])
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gateway, first)
    assert "this key's lifetime limit" in caught.value.message
    ask(gateway, second)  # the other key has no limit


async def _second_key(gw: Gateway, user: str) -> str:
    from ai_service.services import accounts

    async with gw.state.sessions() as s:
        return (await accounts.create_key(s, user)).secret


async def _budget_ids(gw: Gateway) -> list[int]:
    async with gw.state.engine.connect() as conn:
        return [r[0] for r in (await conn.execute(text("SELECT id FROM api_budgets"))).all()]


@pytest.mark.parametrize("stream", [False, True])
def test_every_settlement_adds_its_cost_to_the_hour(gateway: Gateway, stream: bool) -> None:
    key = gateway.create_user("alice", "10")
    client = sdk(gateway, key)
    for _ in range(3):
        reply = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=stream
        )
        if stream:
            list(reply)  # type: ignore[arg-type]
    client.responses.create(model=MODEL, input="hi")
    gateway.wait_settled()
    assert spend_rows(gateway) == spent(gateway) > 0


def test_concurrent_requests_never_spend_past_the_budget(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    ask(gateway, key, max_tokens=50)
    one = spent(gateway)
    limit = one * 6 + one // 2  # pays for six answers like the first, not seven
    set_budget(gateway, limit, key_prefix=key[:12])
    openai_upstream.enqueue(
        *[
            Answer(text="ok", chunk_delay=0.0, usage=FakeUsage(completion_tokens=50))
            for _ in range(40)
        ]
    )

    async def one_call(client: httpx.AsyncClient) -> int:
        r = await client.post(
            f"{gateway.url}/ai/openai/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 50,
            },
        )
        return r.status_code

    async def race() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(one_call(client) for _ in range(40)))

    codes = asyncio.run(race())
    gateway.wait_settled()
    assert set(codes) <= {200, 402} and 402 in codes
    total = spent(gateway)
    assert total <= limit + one  # the first answer was before the budget
    assert spend_rows(gateway) == total
    # used up to within one minimal answer: nothing refused that the budget could pay
    smallest = min(r.reserved for r in gateway.requests() if r.status == "ok")
    assert limit + one - total < smallest * 2


def test_the_caller_sees_its_budgets_and_the_admin_api_sets_them(
    gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> None:
    gw = gateway_factory(
        admin_key=ADMIN, openai_api_key=UPSTREAM_KEY, openai_base_url=openai_upstream.base_url
    )
    key = gw.create_user("alice", "10")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    base = f"{gw.url}/ai/admin/api"
    for body, param in [
        ({"period": "fortnight", "limit_usd": "5"}, "period"),
        ({"period": "total", "limit_usd": "5", "rolling": True}, "rolling"),
        ({"period": "day", "limit_usd": "1e3"}, "limit_usd"),
    ]:
        r = httpx.post(f"{base}/users/alice/budgets", headers=admin, json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param
    r = httpx.post(
        f"{base}/keys/{key[:12]}/budgets", headers=admin, json={"period": "week", "limit_usd": "5"}
    )
    assert r.status_code == 201, r.text
    assert (r.json()["scope"], r.json()["limit_usd"]) == ("key", "5.0")
    r = httpx.post(
        f"{base}/users/alice/budgets",
        headers=admin,
        json={"period": "month", "limit_usd": "20", "rolling": True},
    )
    assert r.status_code == 201
    ask(gw, key)
    cost = spent(gw)
    account = httpx.get(f"{gw.url}/ai/account", headers={"Authorization": f"Bearer {key}"}).json()
    budgets = {b["period"]: b for b in account["budgets"]}
    assert budgets["week"]["nano_usd_used"] == cost
    assert budgets["week"]["resets_at"].endswith("+00:00")
    assert budgets["month"]["rolling"] is True and budgets["month"]["resets_at"] is None
    assert budgets["month"]["nano_usd_used"] == cost
    listed = httpx.get(f"{base}/users/alice/budgets", headers=admin).json()["data"]
    assert len(listed) == 2
    r = httpx.delete(f"{base}/budgets/{listed[0]['id']}", headers=admin)
    assert r.status_code == 200
    assert len(httpx.get(f"{base}/users/alice/budgets", headers=admin).json()["data"]) == 1
    assert httpx.delete(f"{base}/budgets/{listed[0]['id']}", headers=admin).status_code == 404
