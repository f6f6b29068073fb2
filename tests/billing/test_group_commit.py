"""Group commit on PostgreSQL: concurrent reservations and settlements sharing statements.

The ledger is driven directly, with a real database: many calls at once must
be grouped (the counting pool shows it), and the balances must come out exactly
as if each call had run alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ai_service.billing import ledger, pgledger
from ai_service.billing.ledger import Settlement
from ai_service.billing.pgledger import PgLedger
from ai_service.billing.pgpool import Connections
from ai_service.metrics import Metrics
from ai_service.storage.db import DATA_ERRORS, async_url
from ai_service.waits import DatabaseQueue
from tests.support.databases import PostgresDatabase, backends

pytestmark = pytest.mark.skipif(
    "postgresql" not in backends(), reason="PostgreSQL is not among the test databases"
)


class CountingConnections(Connections):
    """The ledger's pool, counting its statements by kind."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn, 8, {"synchronous_commit": "off"})
        self.tried: Counter[str] = Counter()  # statements sent
        self.runs: Counter[str] = Counter()  # statements that succeeded

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.tried[_kind(sql)] += 1
        value = await super().fetchval(sql, *args)
        self.runs[_kind(sql)] += 1
        return value

    async def fetchcol(self, sql: str, *args: Any) -> list[Any]:
        self.tried[_kind(sql)] += 1
        values = await super().fetchcol(sql, *args)
        self.runs[_kind(sql)] += 1
        return values

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self.tried[_kind(sql)] += 1
        value = await super().fetchrow(sql, *args)
        self.runs[_kind(sql)] += 1
        return value

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.tried[_kind(sql)] += 1
        values = await super().fetch(sql, *args)
        self.runs[_kind(sql)] += 1
        return values


def _kind(sql: str) -> str:
    names = {
        pgledger.RESERVE_OPEN: "reserve",
        pgledger.RESERVE_OPEN_MANY: "reserve-group",
        pgledger.SETTLE: "settle",
        pgledger.SETTLE_MANY: "settle-group",
    }
    return names.get(sql, "other")


@pytest.fixture
def pg_url(postgres: PostgresDatabase) -> str:
    return postgres.fresh()


@pytest_asyncio.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(async_url(pg_url))
    yield engine
    await engine.dispose()


async def make(engine: AsyncEngine, group: bool = True) -> tuple[PgLedger, CountingConnections]:
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    pool = CountingConnections(dsn)
    return PgLedger(engine, pool, group), pool


async def new_user(engine: AsyncEngine, name: str, balance: int) -> int:
    async with engine.begin() as conn:
        user_id = (
            await conn.exec_driver_sql(
                "INSERT INTO api_users (name, usd_available, usd_reserved, disabled) "
                "VALUES ($1, 0, 0, false) RETURNING id",
                (name,),
            )
        ).scalar_one()
        await ledger.topup(conn, user_id, balance)
    return int(user_id)


def row(request_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "client_request_id": None,
        "surface": "chat",
        "key_id": None,
        "provider": "openai",
        "requested_model": "gpt-5.4-mini",
        "model": "gpt-5.4-mini",
        "stream": False,
        "default_price": False,
        "instance_id": "test",
    }


async def balances(engine: AsyncEngine, user_id: int) -> tuple[int, int]:
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql(
            "SELECT usd_available, usd_reserved FROM api_users WHERE id = $1", (user_id,)
        )
        available, reserved = result.one()
    return int(available), int(reserved)


async def scalar(engine: AsyncEngine, sql: str, *params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.exec_driver_sql(sql, params)).scalar_one()


async def test_a_storm_of_reservations_and_settlements_is_grouped_and_exact(
    engine: AsyncEngine,
) -> None:
    ledger_, pool = await make(engine)
    # three users: one can pay for 50 of its 120 reservations, two for all of theirs
    users = [
        await new_user(engine, "tight", 50 * 1000 + 999),
        await new_user(engine, "rich1", 10**9),
        await new_user(engine, "rich2", 10**9),
    ]
    calls = [(users[i % 3], f"r-{i}-{uuid.uuid4().hex[:8]}") for i in range(360)]

    async def reserve(user_id: int, request_id: str) -> bool:
        return await ledger_.reserve_open(user_id, 1000, row(request_id))

    granted = await asyncio.gather(*(reserve(u, r) for u, r in calls))
    by_user = Counter(u for (u, _), ok in zip(calls, granted, strict=True) if ok)
    assert by_user[users[0]] == 50  # exactly what the balance pays, however grouped
    assert by_user[users[1]] == by_user[users[2]] == 120
    assert pool.runs["reserve-group"] >= 1
    assert pool.runs["reserve-group"] + pool.runs["reserve"] < 360
    assert await balances(engine, users[0]) == (999, 50 * 1000)

    # settle every granted request twice at once: charged once, released once
    done = [(u, r) for (u, r), ok in zip(calls, granted, strict=True) if ok]

    async def settle(user_id: int, request_id: str) -> bool:
        s = Settlement(status="ok", http_status=200, cost=400, response_body=f"answer {request_id}")
        return bool(await ledger_.settle(request_id, user_id, 1000, s, None))

    outcomes = await asyncio.gather(*(settle(u, r) for u, r in done for _twice in (1, 2)))
    assert sum(outcomes) == len(done) == 290
    assert pool.runs["settle-group"] >= 1
    assert await balances(engine, users[0]) == (50 * 1000 + 999 - 50 * 400, 0)
    assert await balances(engine, users[1]) == (10**9 - 120 * 400, 0)
    assert (
        await scalar(engine, "SELECT count(*) FROM api_transactions WHERE kind = 'charge'") == 290
    )
    assert await scalar(engine, "SELECT count(*) FROM api_request_data") == 290
    assert await scalar(engine, "SELECT count(*) FROM api_requests WHERE status = 'ok'") == 290
    assert await scalar(engine, "SELECT count(*) FROM api_requests") == 290
    async with engine.connect() as conn:
        assert await ledger.reconcile(conn) == []
    await ledger_.close()


async def test_one_bad_row_fails_alone_and_the_rest_of_its_group_settles(
    engine: AsyncEngine,
) -> None:
    ledger_, pool = await make(engine)
    user_id = await new_user(engine, "alice", 10**9)
    ids = [f"bad-{i}-{uuid.uuid4().hex[:8]}" for i in range(10)]
    assert all(await asyncio.gather(*(ledger_.reserve_open(user_id, 5000, row(r)) for r in ids)))

    def settlement(i: int) -> Settlement:
        # a NUL character is refused by PostgreSQL text columns; the first
        # settlement runs alone at once, the next nine queue and are grouped
        body = "broken \x00 payload" if i == 7 else f"fine {i}"
        return Settlement(status="ok", http_status=200, cost=1000, response_body=body)

    results = await asyncio.gather(
        *(ledger_.settle(r, user_id, 5000, settlement(i), None) for i, r in enumerate(ids)),
        return_exceptions=True,
    )
    # the group was refused as a whole, then each settlement ran alone
    assert pool.tried["settle-group"] >= 1
    assert pool.runs["settle-group"] == 0
    assert pool.runs["settle"] == 9
    assert isinstance(results[7], DATA_ERRORS)
    assert [bool(r) for i, r in enumerate(results) if i != 7] == [True] * 9
    available, reserved = await balances(engine, user_id)
    assert (available, reserved) == (10**9 - 10 * 5000 + 9 * 4000, 5000)
    assert await scalar(engine, "SELECT count(*) FROM api_requests WHERE status = 'pending'") == 1
    await ledger_.close()


async def test_a_queued_caller_that_is_cancelled_waits_for_its_statement(
    engine: AsyncEngine,
) -> None:
    ledger_, pool = await make(engine)
    user_id = await new_user(engine, "bob", 10**9)
    ids = [f"r-{i}-{uuid.uuid4().hex[:8]}" for i in range(8)]
    tasks = [asyncio.ensure_future(ledger_.reserve_open(user_id, 7000, row(r))) for r in ids]
    await asyncio.sleep(0)  # the first caller runs its own statement; the others queue
    tasks[-1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[-1]
    # when the cancellation reaches the caller, its statement has ended: the outcome is final
    cancelled = "SELECT count(*) FROM api_requests WHERE request_id = $1"
    before = await scalar(engine, cancelled, ids[-1]), await balances(engine, user_id)
    assert all(await asyncio.gather(*tasks[:-1]))
    await asyncio.sleep(0.3)
    assert await scalar(engine, cancelled, ids[-1]) == before[0]
    available, reserved = await balances(engine, user_id)
    assert reserved == 7000 * (7 + before[0])
    assert available + reserved == 10**9
    assert pool.runs["reserve"] >= 1
    assert pool.runs["reserve-group"] >= 1
    await ledger_.close()


async def test_without_group_commit_every_call_is_its_own_statement(engine: AsyncEngine) -> None:
    ledger_, pool = await make(engine, group=False)
    user_id = await new_user(engine, "carol", 10**9)
    ids = [f"solo-{i}" for i in range(40)]
    assert all(await asyncio.gather(*(ledger_.reserve_open(user_id, 10, row(r)) for r in ids)))
    assert pool.runs == Counter({"reserve": 40})
    await ledger_.close()


async def test_each_statement_is_observed_with_the_calls_it_carries(engine: AsyncEngine) -> None:
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    metrics = Metrics()
    ledger_ = PgLedger(engine, CountingConnections(dsn), queue=DatabaseQueue(metrics))
    user_id = await new_user(engine, "dave", 10**9)
    ids = [f"sized-{i}-{uuid.uuid4().hex[:8]}" for i in range(8)]

    def sample(name: str, kind: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"kind": kind, **labels})

    # the first call runs alone at once; the seven that arrive meanwhile share the next statement
    assert all(await asyncio.gather(*(ledger_.reserve_open(user_id, 10, row(r)) for r in ids)))
    s = Settlement(status="ok", http_status=200, cost=4)
    assert all(await asyncio.gather(*(ledger_.settle(r, user_id, 10, s, None) for r in ids)))
    for kind in ("reserve", "settle"):
        assert sample("ai_service_ledger_batch_size_count", kind) == 2
        assert sample("ai_service_ledger_batch_size_sum", kind) == 8
        assert sample("ai_service_ledger_batch_size_bucket", kind, le="1.0") == 1
        assert sample("ai_service_ledger_batch_size_bucket", kind, le="4.0") == 1
        assert sample("ai_service_ledger_batch_size_bucket", kind, le="8.0") == 2
    await ledger_.close()
