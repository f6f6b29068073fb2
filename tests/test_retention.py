"""Retention: daily totals, then pruning, with the books and every usage figure unchanged.

Real requests go through the gateway; their rows are then aged by moving
their times back (the only way to have rows of past days without waiting for
them). After the job writes the days' totals and prunes, the usage a key holder
and an operator see is what it was before, the books still balance, and a
second run changes nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service import retention
from ai_service.billing.ledger import utcnow
from ai_service.retention import Policy
from ai_service.services import usage
from ai_service.storage.models import ApiRequest
from tests.conftest import UPSTREAM_KEY
from tests.fakes.behaviours import ErrorReply
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

CHAT = "/ai/openai/chat/completions"
BODY = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}
NOW = utcnow()
TODAY = NOW.date()


def ask(gw: Gateway, key: str, count: int) -> None:
    for _ in range(count):
        httpx.post(gw.url + CHAT, headers={"X-API-Key": key}, json=BODY).raise_for_status()


def age(gw: Gateway, ids: list[int], days: int) -> None:
    """Move the rows `ids` back `days` days, keeping their time of day."""

    async def work() -> None:
        async with gw.state.engine.begin() as conn:
            rows = await conn.execute(
                select(ApiRequest.id, ApiRequest.created_at).where(ApiRequest.id.in_(ids))
            )
            for row_id, created in rows.all():
                await conn.execute(
                    update(ApiRequest)
                    .where(ApiRequest.id == row_id)
                    .values(created_at=created - dt.timedelta(days=days))
                )

    gw.call(work())


def run(gw: Gateway, policy: Policy, now: dt.datetime = NOW) -> retention.Report:
    return gw.call(retention.run(gw.state.engine, policy, now))


def figures(gw: Gateway, keys: dict[str, str]) -> dict[str, Any]:
    """Everything a key holder and an operator read of the usage, over windows of whole days
    (and all time)."""

    async def operator(s: AsyncSession) -> dict[str, Any]:
        since = dt.datetime.combine(TODAY - dt.timedelta(days=60), dt.time(), dt.UTC)
        until = dt.datetime.combine(TODAY + dt.timedelta(days=1), dt.time(), dt.UTC)
        window = usage.Filters(since=since, until=until)
        # a window that starts and ends inside days: those days come from the request rows
        inside = usage.Filters(since=NOW - dt.timedelta(days=5, hours=1), until=NOW)
        return {
            "inside": await usage.summary(s, inside),
            "inside_daily": await usage.daily(s, inside),
            "summary": await usage.summary(s, window),
            "all_time": await usage.summary(s, usage.Filters()),
            "daily": await usage.daily(s, window),
            "by_model": await usage.daily(s, window, "model"),
            "users": await usage.user_totals(s, None),
        }

    found = gw.session(operator)
    for name, key in keys.items():
        account = httpx.get(gw.url + "/ai/account", headers={"X-API-Key": key}).json()
        found[name] = {k: account[k] for k in ("spend", "requests", "models")}
        found[name + "-key"] = httpx.get(gw.url + "/ai/key", headers={"X-API-Key": key}).json()
    return found


def count(gw: Gateway, table: str) -> int:
    assert table.isidentifier()
    return int(gw.scalar(f"SELECT count(*) FROM {table}"))  # noqa: S608


@pytest.fixture
def history(gateway: Gateway, openai_upstream: FakeOpenAI) -> dict[str, Any]:
    """Requests of two users spread over 40 days ago, 5 days ago and today (one failed)."""
    keys = {"alice": gateway.create_user("alice", "10"), "bob": gateway.create_user("bob", "10")}
    ask(gateway, keys["alice"], 3)
    ask(gateway, keys["bob"], 2)
    openai_upstream.enqueue(ErrorReply(400, message="bad thing"))
    httpx.post(gateway.url + CHAT, headers={"X-API-Key": keys["bob"]}, json=BODY)
    gateway.wait_settled()
    old = [r.id for r in gateway.requests()]
    age(gateway, old[:3], 40)
    age(gateway, old[3:], 5)
    ask(gateway, keys["alice"], 2)  # today's
    gateway.wait_settled()
    return {"keys": keys, "old": old[:3], "recent": old[3:]}


def test_totals_and_pruning_leave_the_books_and_the_usage_unchanged(
    gateway: Gateway, history: dict[str, Any]
) -> None:
    before = figures(gateway, history["keys"])
    assert before["all_time"]["totals"]["requests"] == 8
    assert before["all_time"]["totals"]["errors"] == 1
    assert before["inside"]["totals"]["requests"] == 3  # the rows of 5 days ago
    assert gateway.books_problems() == []

    report = run(gateway, Policy(payload_days=30, request_days=10, webhook_days=30))

    # every day from the oldest row's to yesterday is totalled; today is not
    assert report.days_totalled[0] == (TODAY - dt.timedelta(days=40)).isoformat()
    assert report.days_totalled[-1] == (TODAY - dt.timedelta(days=1)).isoformat()
    assert report.horizon.rolled_until == TODAY
    assert report.horizon.pruned_until == TODAY - dt.timedelta(days=10)
    # the three rows of 40 days ago are gone, with their payloads; the rest are kept
    assert report.requests == 3
    remaining = {r.id for r in gateway.requests()}
    assert remaining.isdisjoint(history["old"]) and set(history["recent"]) <= remaining
    assert count(gateway, "api_requests") == 5
    assert all(gateway.payload(r.request_id) is not None for r in gateway.requests())
    assert count(gateway, "api_request_data") == 5

    assert figures(gateway, history["keys"]) == before
    assert gateway.books_problems() == []

    again = run(gateway, Policy(payload_days=30, request_days=10, webhook_days=30))
    assert again.days_totalled == [] and again.requests == again.payloads == 0
    assert figures(gateway, history["keys"]) == before


def test_payloads_go_long_before_the_rows(gateway: Gateway, history: dict[str, Any]) -> None:
    before = figures(gateway, history["keys"])
    report = run(gateway, Policy(payload_days=2, request_days=None))
    assert report.requests == 0 and report.payloads == 6
    assert count(gateway, "api_requests") == 8
    kept = {r.request_id for r in gateway.requests() if gateway.payload(r.request_id)}
    assert kept == {r.request_id for r in gateway.requests() if r.id not in history["old"]} - {
        r.request_id for r in gateway.requests() if r.id in history["recent"]
    }
    assert len(kept) == 2  # today's
    assert figures(gateway, history["keys"]) == before
    assert run(gateway, Policy(payload_days=2)).payloads == 0


def test_a_day_with_a_pending_request_waits_and_its_rows_stay(
    gateway: Gateway, history: dict[str, Any]
) -> None:
    held = history["recent"][0]
    gateway.call(_set_status(gateway, held, "pending"))
    report = run(gateway, Policy(request_days=1))
    # totalled up to the day before the pending request's, and pruned no further
    assert report.horizon.rolled_until == TODAY - dt.timedelta(days=5)
    assert report.requests == 3
    assert count(gateway, "api_requests") == 5
    gateway.call(_set_status(gateway, held, "ok"))
    report = run(gateway, Policy(request_days=1))
    assert report.horizon.rolled_until == TODAY
    assert report.requests == 3 and count(gateway, "api_requests") == 2
    assert gateway.books_problems() == []


async def _set_status(gw: Gateway, row_id: int, status: str) -> None:
    async with gw.state.engine.begin() as conn:
        await conn.execute(update(ApiRequest).where(ApiRequest.id == row_id).values(status=status))


def test_a_day_is_totalled_only_an_hour_after_it_ends(
    gateway: Gateway, history: dict[str, Any]
) -> None:
    midnight = dt.datetime.combine(TODAY, dt.time(), dt.UTC)
    early = run(gateway, Policy(), now=midnight + dt.timedelta(minutes=59))
    assert early.horizon.rolled_until == TODAY - dt.timedelta(days=1)
    late = run(gateway, Policy(), now=midnight + dt.timedelta(hours=1))
    assert late.days_totalled == [(TODAY - dt.timedelta(days=1)).isoformat()]


def test_webhook_events_idempotency_keys_and_owners_are_pruned_when_done(
    gateway: Gateway,
) -> None:
    user = gateway.create_user("carol", "1")
    user_id = gateway.scalar("SELECT id FROM api_users WHERE name = 'carol'")
    assert user
    old = NOW - dt.timedelta(days=100)

    async def seed() -> None:
        async with gateway.state.engine.begin() as conn:
            events = [
                ("delivered", "balance.low:1:0"),
                ("failed", "budget.threshold:1:2026-08-01:5000:80"),
                ("pending", "balance.low:1:1"),
                ("delivered", "budget.threshold:2:total:5000:50"),
            ]
            for n, (status, dedup) in enumerate(events):
                await conn.execute(
                    text(
                        "INSERT INTO api_webhook_events (event_id, type, dedup_key, user_id,"
                        " payload, status, attempts, next_attempt_at, created_at)"
                        " VALUES (:e, 'balance.low', :d, :u, '{}', :s, 1, :t, :t)"
                    ),
                    {"e": f"evt_{n}", "d": dedup, "u": user_id, "s": status, "t": old},
                )
            await conn.execute(
                text(
                    "INSERT INTO api_idempotency (user_id, key, body_hash, request_id, status,"
                    " stream, created_at) VALUES (:u, 'k', 'h', 'r', 'done', false, :t)"
                ),
                {"u": user_id, "t": old},
            )
            await conn.execute(
                text(
                    "INSERT INTO api_response_owners (response_id, user_id, created_at)"
                    " VALUES ('resp_1', :u, :t), ('resp_2', :u, :now)"
                ),
                {"u": user_id, "t": old, "now": NOW},
            )

    gateway.call(seed())
    report = run(gateway, Policy(webhook_days=90))
    assert (report.webhook_events, report.idempotency_keys, report.response_owners) == (2, 1, 1)
    # an event still being delivered stays, whatever its age, and so does a lifetime budget's
    # (it keeps its threshold from firing again)
    assert gateway.scalar("SELECT count(*) FROM api_webhook_events") == 2
    assert (
        gateway.scalar(
            "SELECT count(*) FROM api_webhook_events WHERE status = 'pending'"
            " OR dedup_key LIKE '%:total:%'"
        )
        == 2
    )

    # never sooner than 32 days, whatever the policy says
    async def recent() -> None:
        async with gateway.state.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO api_webhook_events (event_id, type, dedup_key, user_id,"
                    " payload, status, attempts, next_attempt_at, created_at)"
                    " VALUES ('evt_r', 'balance.low', 'balance.low:1:2', :u, '{}', 'delivered',"
                    " 1, :t, :t)"
                ),
                {"u": user_id, "t": NOW - dt.timedelta(days=31)},
            )

    gateway.call(recent())
    assert run(gateway, Policy(webhook_days=1)).webhook_events == 0
    assert gateway.scalar("SELECT count(*) FROM api_webhook_events") == 3
    assert gateway.scalar("SELECT response_id FROM api_response_owners") == "resp_2"


def test_the_gateway_runs_the_job_under_its_lease(
    gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> None:
    upstream = {"openai_api_key": UPSTREAM_KEY, "openai_base_url": openai_upstream.base_url}
    first = gateway_factory(**upstream)
    key = first.create_user("dave", "10")
    ask(first, key, 3)
    first.wait_settled()
    age(first, [r.id for r in first.requests()], 20)
    first.stop()
    second = gateway_factory(**upstream, retention_request_days=7, retention_interval_seconds=0.2)
    deadline = time.monotonic() + 20
    while count(second, "api_requests") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count(second, "api_requests") == 0
    assert second.scalar("SELECT sum(requests) FROM api_usage_daily") == 3
    assert second.scalar("SELECT holder FROM api_leases WHERE name = 'retention'")
    account = httpx.get(second.url + "/ai/account", headers={"X-API-Key": key}).json()
    assert account["requests"]["total"] == 3
    assert second.books_problems() == []


def test_the_admin_api_shows_retention_and_runs_it(
    gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> None:
    admin = {"X-Admin-Key": "retention-admin-key-0123456789"}
    gw = gateway_factory(
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=openai_upstream.base_url,
        admin_key=admin["X-Admin-Key"],
        retention_request_days=7,
    )
    key = gw.create_user("erin", "10")
    ask(gw, key, 2)
    gw.wait_settled()
    age(gw, [r.id for r in gw.requests()], 9)
    shown = httpx.get(gw.url + "/ai/admin/api/retention", headers=admin).json()
    assert shown["totalled_until"] is None and shown["requests_kept_from"] is None
    assert shown["policy"] == {"payload_days": 30, "request_days": 7, "webhook_days": 90}
    ran = httpx.post(gw.url + "/ai/admin/api/retention/run", headers=admin).json()
    assert ran["deleted"]["requests"] == 2 and len(ran["days_totalled"]) == 9
    shown = httpx.get(gw.url + "/ai/admin/api/retention", headers=admin).json()
    assert shown["totalled_until"] == TODAY.isoformat()
    assert shown["requests_kept_from"] == (TODAY - dt.timedelta(days=7)).isoformat()
    assert httpx.post(gw.url + "/ai/admin/api/retention/run").status_code == 401
