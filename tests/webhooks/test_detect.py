"""What fires an alert: budgets crossing 50 / 80 / 100% of their limit and balances falling
low, found by scans that race on two engines (two instances) and run again and again,
yet write each event once; the lease that keeps the scan on one instance at a time."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import orjson
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ai_service import leases
from ai_service.billing import budgets, sqlledger
from ai_service.billing.budgets import Budget
from ai_service.billing.ledger import utcnow
from ai_service.billing.money import usd_to_nano
from ai_service.services import accounts, budget_admin
from ai_service.storage.db import make_engine, session_factory
from ai_service.storage.models import ApiKey, ApiUser, ApiWebhookEvent
from ai_service.webhooks import detect

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def engines(db_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two engines on one database: the connections of two instances."""
    a, b = make_engine(db_url), make_engine(db_url)
    yield a, b
    await a.dispose()
    await b.dispose()


async def create_user(engine: AsyncEngine, name: str, balance: str) -> tuple[int, int, str]:
    """(user id, key id, key prefix) of a new user."""
    async with session_factory(engine)() as session:
        key = await accounts.create_user(session, name, usd_to_nano(balance))
        user = await accounts.get_user(session, name)
        row = await session.scalar(select(ApiKey).where(ApiKey.prefix == key.prefix))
        assert row is not None
        return user.id, row.id, key.prefix


async def spend(engine: AsyncEngine, user_id: int, key_id: int, usd: str) -> None:
    """Settled spend of a key this hour, as the settlements write it."""
    async with engine.begin() as conn:
        await sqlledger.add_spend(conn, user_id, key_id, utcnow(), usd_to_nano(usd))


async def stored(engine: AsyncEngine) -> list[ApiWebhookEvent]:
    async with session_factory(engine)() as session:
        return list(
            (await session.scalars(select(ApiWebhookEvent).order_by(ApiWebhookEvent.id))).all()
        )


async def race(a: AsyncEngine, b: AsyncEngine, rounds: int = 2, default: int | None = None) -> None:
    """Scans on both engines at once, several rounds."""
    for _ in range(rounds):
        await asyncio.gather(detect.scan(a, default, utcnow()), detect.scan(b, default, utcnow()))


async def test_a_budget_crossing_50_80_100_percent_writes_exactly_three_events_under_racing_scans(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    a, b = engines
    user_id, key_id, prefix = await create_user(a, "alice", "100")
    async with session_factory(a)() as session:
        budget = await budget_admin.set_budget(
            session, key_prefix=prefix, period="day", limit=usd_to_nano("10")
        )
    await race(a, b)
    assert await stored(a) == []

    seen: list[int] = []
    for usd, expected in (
        ("4.99", []),
        ("0.01", [50]),
        ("2.99", [50]),
        ("0.01", [50, 80]),
        ("1.99", [50, 80]),
        ("0.01", [50, 80, 100]),
        ("3", [50, 80, 100]),
    ):
        await spend(a, user_id, key_id, usd)
        await race(a, b)
        seen = [orjson.loads(e.payload)["data"]["threshold"] for e in await stored(b)]
        assert seen == expected, usd

    found = await stored(a)
    assert len({e.event_id for e in found}) == 3
    day = utcnow().date().isoformat()
    limit = usd_to_nano("10")
    assert [e.dedup_key for e in found] == [
        f"budget.threshold:{budget.id}:{day}:{limit}:{p}" for p in (50, 80, 100)
    ]
    body = orjson.loads(found[1].payload)
    assert body["type"] == "budget.threshold" and body["id"] == found[1].event_id
    data = body["data"]
    assert (data["user"], data["threshold"], data["refused"]) == ("alice", 80, False)
    assert {k: data["budget"][k] for k in ("scope", "key_prefix", "period", "rolling")} == {
        "scope": "key",
        "key_prefix": prefix,
        "period": "day",
        "rolling": False,
    }
    assert (data["budget"]["limit_usd"], data["budget"]["used_usd"]) == ("10.0", "8.0")
    assert data["budget"]["period_start"] == f"{day}T00:00:00+00:00"
    assert data["budget"]["resets_at"].endswith("T00:00:00+00:00")
    assert all(e.user_id == user_id and e.status == "pending" for e in found)


async def test_a_changed_limit_and_a_new_period_alert_again(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    a, b = engines
    user_id, key_id, _ = await create_user(a, "alice", "100")
    async with session_factory(a)() as session:
        await budget_admin.set_budget(
            session, user_name="alice", period="month", limit=usd_to_nano("10")
        )
    await spend(a, user_id, key_id, "6")
    await race(a, b)
    assert len(await stored(a)) == 1
    async with session_factory(a)() as session:
        await budget_admin.set_budget(
            session, user_name="alice", period="month", limit=usd_to_nano("7")
        )
    await race(a, b)  # $6 of $7: 50% and 80% of the new limit
    thresholds = [orjson.loads(e.payload)["data"]["threshold"] for e in await stored(a)]
    assert thresholds == [50, 50, 80]
    # next month, the same spend is the new month's: alerts again
    next_month = (utcnow().replace(day=28) + dt.timedelta(days=5)).replace(hour=1)
    async with a.begin() as conn:
        await conn.execute(
            text("UPDATE api_spend_hourly SET hour = :h"), {"h": budgets.hour_of(next_month)}
        )
    await asyncio.gather(detect.scan(a, None, next_month), detect.scan(b, None, next_month))
    assert len(await stored(a)) == 5


def test_period_keys_count_rolling_windows_in_the_calendar_period_of_their_length() -> None:
    now = dt.datetime(2026, 12, 3, 15, 30, tzinfo=dt.UTC)  # a Thursday
    key = lambda period, rolling=False: detect.period_key(Budget(1, None, period, rolling, 5), now)  # noqa: E731
    assert key("day") == key("day", rolling=True) == "2026-12-03"
    assert key("week") == key("week", rolling=True) == "2026-11-30"
    assert key("month") == key("month", rolling=True) == "2026-12-01"
    assert key("total") == "total"
    assert detect.crossed(49, 100) == []
    assert detect.crossed(50, 100) == [50]
    assert detect.crossed(99, 100) == [50, 80]
    assert detect.crossed(101, 100) == [50, 80, 100]


async def test_balance_low_fires_once_per_episode_under_racing_scans(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    a, b = engines
    default = usd_to_nano("1")
    await create_user(a, "alice", "0.5")
    await create_user(a, "bob", "3")
    async with session_factory(a)() as session:  # bob's own threshold
        bob = await accounts.get_user(session, "bob")
        bob.low_balance_nano = usd_to_nano("5")
        carol = ApiUser(
            name="carol", usd_available=0, usd_reserved=0, disabled=False, low_balance_nano=0
        )
        session.add(carol)  # 0: never alerted, whatever the default
        await session.commit()
    await race(a, b, default=default)
    names = lambda found: [orjson.loads(e.payload)["data"]["user"] for e in found]  # noqa: E731
    assert sorted(names(await stored(a))) == ["alice", "bob"]

    async def topup(name: str, usd: str) -> None:
        async with session_factory(a)() as session:
            await accounts.topup(session, name, usd_to_nano(usd), "test")

    await topup("alice", "0.4")  # $0.9: still low, same episode
    await race(a, b, default=default)
    assert len(await stored(a)) == 2
    await topup("alice", "0.1")  # $1.0: at the threshold, not below: re-armed
    await race(a, b, default=default)
    assert len(await stored(a)) == 2
    async with a.begin() as conn:  # charged below again (as settlements do)
        await conn.execute(
            text("UPDATE api_users SET usd_available = usd_available - 1 WHERE name = 'alice'")
        )
    await race(a, b, default=default)
    found = await stored(a)
    assert names(found)[-1] == "alice" and len(found) == 3
    assert found[-1].dedup_key.endswith(":1") and found[0].dedup_key.endswith(":0")


async def test_the_scan_lease_is_held_by_one_instance_until_it_expires(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    a, b = engines
    assert await leases.take(a, "job", "gw-a", 0.5)
    assert await leases.take(a, "job", "gw-a", 0.5)  # renewed
    assert not await leases.take(b, "job", "gw-b", 0.5)
    results = await asyncio.gather(*(leases.take(b, "race", f"gw-{n}", 5) for n in range(6)))
    assert results.count(True) == 1
    await asyncio.sleep(0.6)  # gw-a went silent
    assert await leases.take(b, "job", "gw-b", 0.5)
    assert not await leases.take(a, "job", "gw-a", 0.5)
    await leases.release(b, "job", "gw-b")
    assert await leases.take(a, "job", "gw-a", 0.5)
