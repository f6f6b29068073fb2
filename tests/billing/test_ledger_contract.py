"""The ledger's contract, as worked examples run against every backend.

Each example states the balances before and after, the request row, and the
ledger's transfers, like the books of a double-entry ledger, and ends with
`reconcile()` finding nothing. The backends: SQLite (one thread hop an
operation), PostgreSQL (one statement an operation, group commit), and the
SQLAlchemy path (a settlement with an `also` hook) on each database.
Amounts are nano-USD.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ai_service import instances
from ai_service.billing import ledger
from ai_service.billing.ledger import USERS, Ledger, Outcome, Settlement
from ai_service.billing.pgledger import PgLedger
from ai_service.billing.sqlledger import SqlLedger
from ai_service.storage.db import make_engine


@dataclass
class Books:
    """One backend's ledger over a fresh database, and what a test reads back."""

    engine: AsyncEngine
    ledger: Ledger
    hooked: bool  # settle through the SQLAlchemy path, with an `also` hook
    hook_calls: int = 0

    async def user(self, name: str, top_up: int) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                USERS.insert()
                .values(name=name, usd_available=0, usd_reserved=0, disabled=False)
                .returning(USERS.c.id)
            )
            user_id = int(result.scalar_one())
            if top_up:
                await ledger.topup(conn, user_id, top_up)
        return user_id

    async def reserve(self, user_id: int, request_id: str, amount: int) -> bool:
        return await self.ledger.reserve_open(user_id, amount, row(request_id))

    async def settle(
        self, request_id: str, user_id: int, reserved: int, cost: int, status: str = "ok"
    ) -> Outcome:
        s = Settlement(status=status, http_status=200, cost=cost, model="m", provider="openai")
        also = self.hook if self.hooked else None
        return await self.ledger.settle(request_id, user_id, reserved, s, also)

    async def hook(self, conn: AsyncConnection) -> None:
        self.hook_calls += 1

    async def balance(self, user_id: int) -> tuple[int, int]:
        async with self.engine.connect() as conn:
            found = await conn.execute(
                select(USERS.c.usd_available, USERS.c.usd_reserved).where(USERS.c.id == user_id)
            )
            available, reserved = found.one()
        return int(available), int(reserved)

    async def request(self, request_id: str) -> tuple[str, int, int, int]:
        """status, cost, uncollected, reserved of a request row."""
        async with self.engine.connect() as conn:
            found = await conn.execute(
                text(
                    "SELECT status, cost, uncollected, reserved FROM api_requests"
                    " WHERE request_id = :r"
                ),
                {"r": request_id},
            )
            status, cost, uncollected, reserved = found.one()
        return str(status), int(cost), int(uncollected), int(reserved)

    async def transfers(self, request_id: str) -> list[tuple[str, int, str, str]]:
        async with self.engine.connect() as conn:
            found = await conn.execute(
                text(
                    "SELECT kind, amount, debit_account, credit_account FROM api_transactions"
                    " WHERE request_id = :r ORDER BY kind"
                ),
                {"r": request_id},
            )
            return [(str(k), int(a), str(d), str(c)) for k, a, d, c in found.all()]

    async def reconcile(self) -> list[ledger.Discrepancy]:
        async with self.engine.connect() as conn:
            return await ledger.reconcile(conn)


def row(request_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "client_request_id": None,
        "surface": "chat",
        "key_id": None,
        "provider": "openai",
        "requested_model": "m",
        "model": "m",
        "stream": False,
        "default_price": False,
        "instance_id": "contract",
    }


@pytest_asyncio.fixture(params=["fast", "hooked"])
async def books(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Books]:
    engine = make_engine(db_url)
    if request.param == "fast":
        chosen = await ledger.make_ledger(engine, pool_size=4)
        assert type(chosen) is not SqlLedger  # the backend's own hot path
    else:
        chosen = SqlLedger(engine)
    yield Books(engine, chosen, hooked=request.param == "hooked")
    await chosen.close()
    await engine.dispose()


async def test_a_cost_under_the_reservation_releases_the_rest(books: Books) -> None:
    alice = await books.user("alice", 1_000_000)
    assert await books.balance(alice) == (1_000_000, 0)
    assert await books.reserve(alice, "r1", 300_000)
    assert await books.balance(alice) == (700_000, 300_000)
    assert await books.request("r1") == ("pending", 0, 0, 300_000)

    outcome = await books.settle("r1", alice, 300_000, 120_000)

    assert outcome == Outcome(True, charged=120_000, uncollected=0)
    assert await books.balance(alice) == (880_000, 0)
    assert await books.request("r1") == ("ok", 120_000, 0, 300_000)
    assert await books.transfers("r1") == [("charge", 120_000, f"user:{alice}", "revenue")]
    assert await books.reconcile() == []
    assert books.hook_calls == (1 if books.hooked else 0)


async def test_a_cost_over_the_reservation_is_charged_from_the_rest_of_the_balance(
    books: Books,
) -> None:
    alice = await books.user("alice", 1_000_000)
    assert await books.reserve(alice, "r1", 300_000)

    outcome = await books.settle("r1", alice, 300_000, 500_000)

    assert outcome == Outcome(True, charged=500_000, uncollected=0)
    assert await books.balance(alice) == (500_000, 0)
    assert await books.request("r1") == ("ok", 500_000, 0, 300_000)
    assert await books.transfers("r1") == [("charge", 500_000, f"user:{alice}", "revenue")]
    assert await books.reconcile() == []


async def test_a_cost_over_the_whole_balance_records_the_rest_as_uncollected(
    books: Books,
) -> None:
    alice = await books.user("alice", 1_000_000)
    assert await books.reserve(alice, "r1", 300_000)

    outcome = await books.settle("r1", alice, 300_000, 1_500_000)

    assert outcome == Outcome(True, charged=1_000_000, uncollected=500_000)
    assert await books.balance(alice) == (0, 0)  # zero, never below
    assert await books.request("r1") == ("ok", 1_500_000, 500_000, 300_000)
    assert await books.transfers("r1") == [
        ("charge", 1_000_000, f"user:{alice}", "revenue"),
        ("uncollected", 500_000, "uncollected", "revenue"),
    ]
    assert await books.reconcile() == []


async def test_a_request_settled_twice_is_charged_once(books: Books) -> None:
    alice = await books.user("alice", 1_000_000)
    assert await books.reserve(alice, "r1", 300_000)

    first, second = await asyncio.gather(
        books.settle("r1", alice, 300_000, 400_000), books.settle("r1", alice, 300_000, 400_000)
    )

    assert sorted([bool(first), bool(second)]) == [False, True]
    assert Outcome(False) in (first, second)
    assert await books.balance(alice) == (600_000, 0)
    assert await books.transfers("r1") == [("charge", 400_000, f"user:{alice}", "revenue")]
    assert not await books.settle("r1", alice, 300_000, 400_000)
    assert await books.reconcile() == []


async def test_concurrent_settlements_beyond_the_balance_take_it_to_zero_exactly(
    books: Books,
) -> None:
    # 10_000 pays 10 reservations of 500; each answer bills 1_500: 15_000 in all.
    # In whatever order they settle, five are charged 1_500 (their 500 and 1_000 of the
    # balance) and five only their 500, with 1_000 each uncollected.
    alice = await books.user("alice", 10_000)
    ids = [f"r{i}" for i in range(10)]
    assert all([await books.reserve(alice, r, 500) for r in ids])
    assert await books.balance(alice) == (5_000, 5_000)

    outcomes = await asyncio.gather(*(books.settle(r, alice, 500, 1_500) for r in ids))

    assert (
        sorted((o.charged, o.uncollected) for o in outcomes)
        == [(500, 1_000)] * 5 + [(1_500, 0)] * 5
    )
    assert await books.balance(alice) == (0, 0)
    assert await books.reconcile() == []


async def test_settlements_with_and_without_a_hook_at_once_share_the_balance_exactly(
    books: Books,
) -> None:
    # the hot path and the SQLAlchemy path lock the same balance row, in the same order
    alice = await books.user("alice", 10_000)
    ids = [f"r{i}" for i in range(12)]
    assert all([await books.reserve(alice, r, 500) for r in ids])
    s = Settlement(status="ok", http_status=200, cost=1_500)

    outcomes = await asyncio.gather(
        *(
            books.ledger.settle(r, alice, 500, s, books.hook if i % 2 else None)
            for i, r in enumerate(ids)
        )
    )

    assert sum(o.charged for o in outcomes) == 10_000
    assert sum(o.uncollected for o in outcomes) == 12 * 1_500 - 10_000
    assert await books.balance(alice) == (0, 0)
    assert books.hook_calls == 6
    assert await books.reconcile() == []


async def test_a_top_up_credits_the_balance_from_funding(books: Books) -> None:
    alice = await books.user("alice", 0)
    async with books.engine.begin() as conn:
        await ledger.topup(conn, alice, 250_000, "invoice 7")
        with pytest.raises(ValueError, match="positive"):
            await ledger.topup(conn, alice, 0)
    assert await books.balance(alice) == (250_000, 0)
    async with books.engine.connect() as conn:
        found = await conn.execute(
            text("SELECT kind, amount, debit_account, credit_account, note FROM api_transactions")
        )
        assert found.all() == [("topup", 250_000, "funding", f"user:{alice}", "invoice 7")]
    assert await books.reconcile() == []


async def test_recovery_releases_a_dead_instances_reservation_through_the_ledger(
    books: Books,
) -> None:
    alice = await books.user("alice", 1_000_000)
    assert await books.reserve(alice, "r1", 300_000)

    released = await instances.recover(books.engine, "survivor", lease_seconds=0)

    assert released == 1
    assert await books.balance(alice) == (1_000_000, 0)
    status, cost, uncollected, _ = await books.request("r1")
    assert (status, cost, uncollected) == ("error", 0, 0)
    assert await books.transfers("r1") == []
    # the late settlement of the dead instance's request finds it no longer pending
    assert await books.settle("r1", alice, 300_000, 100_000) == Outcome(False)
    assert await books.balance(alice) == (1_000_000, 0)
    assert await books.reconcile() == []


async def test_a_refused_reservation_changes_nothing(books: Books) -> None:
    alice = await books.user("alice", 100_000)
    assert not await books.reserve(alice, "r1", 100_001)
    assert await books.balance(alice) == (100_000, 0)
    assert await books.reconcile() == []


async def test_reconcile_reports_an_uncollected_amount_missing_from_the_ledger(
    books: Books,
) -> None:
    alice = await books.user("alice", 1_000_000)
    assert await books.reserve(alice, "r1", 300_000)
    await books.settle("r1", alice, 300_000, 1_500_000)
    async with books.engine.begin() as conn:
        await conn.execute(text("DELETE FROM api_transactions WHERE kind = 'uncollected'"))

    (found,) = await books.reconcile()

    assert (found.user_id, found.logged_uncollected, found.uncollected) == (alice, 500_000, 0)


def sequential(balance: int, items: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(charged, uncollected) of settlements (reserved, cost) of one user, one after another."""
    found = []
    for reserved, cost in items:
        charged, uncollected = ledger.collect(cost, reserved, balance)
        balance += reserved - charged
        found.append((charged, uncollected))
    return found


async def test_one_grouped_settlement_collects_each_user_in_order(db_url: str) -> None:
    """PostgreSQL's SETTLE_MANY: one statement, each user's settlements in the group's order."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the grouped statement is PostgreSQL's")
    engine = make_engine(db_url)
    pg = await ledger.make_ledger(engine, pool_size=2)
    assert isinstance(pg, PgLedger)
    books = Books(engine, pg, hooked=False)
    rng = random.Random(10)
    try:
        for round_ in range(5):
            users = [await books.user(f"u{round_}-{n}", rng.randrange(0, 5_000)) for n in range(3)]
            group: list[tuple[str, int, int, int]] = []
            for i in range(24):
                user_id = rng.choice(users)
                reserved = rng.randrange(0, 800)
                cost = rng.choice([0, rng.randrange(0, 400), rng.randrange(400, 3_000)])
                request_id = f"g{round_}-{i}"
                if await books.reserve(user_id, request_id, reserved):
                    group.append((request_id, user_id, reserved, cost))
            start = {u: (await books.balance(u))[0] for u in users}
            expected: dict[str, tuple[int, int]] = {}
            for u in users:
                mine = [(r, c) for _, uid, r, c in group if uid == u]
                ids = [rid for rid, uid, _, _ in group if uid == u]
                expected.update(zip(ids, sequential(start[u], mine), strict=True))

            closing = [
                (rid, uid, r, Settlement(status="ok", http_status=200, cost=c))
                for rid, uid, r, c in group
            ]
            outcomes = await pg._settle_many(closing)  # one statement for the whole group

            got = {
                c[0]: (o.charged, o.uncollected)
                for c, o in zip(closing, outcomes, strict=True)
                if o
            }
            assert got == expected
            for u in users:
                available, reserved = await books.balance(u)
                assert available >= 0 and reserved == 0
            assert await books.reconcile() == []
    finally:
        await pg.close()
        await engine.dispose()


def _synchronous_level(sqlite: Any) -> int:
    """PRAGMA synchronous of the SQLite ledger's own connection (on its thread)."""
    return int(sqlite._connection().execute("PRAGMA synchronous").fetchone()[0])


async def test_ledger_writes_are_durable_by_default(db_url: str) -> None:
    """PostgreSQL: acknowledged only once flushed, unless `billing_synchronous_commit` is off.

    SQLite runs WAL with synchronous NORMAL whatever the setting (a commit survives
    the process's crash).
    """
    from ai_service.billing.sqliteledger import SqliteLedger
    from ai_service.config import Settings

    durable = Settings(database_url=db_url).billing_synchronous_commit
    assert durable is True
    for on in (durable, False):
        engine = make_engine(db_url, durable=on)
        chosen = await ledger.make_ledger(engine, pool_size=1, synchronous_commit=on)
        try:
            async with engine.connect() as conn:
                if isinstance(chosen, PgLedger):
                    setting = await chosen.pool.fetchval("SHOW synchronous_commit")
                    assert setting == ("on" if on else "off")
                    shown = await conn.scalar(text("SHOW synchronous_commit"))
                    assert shown == ("on" if on else "off")
                else:
                    assert isinstance(chosen, SqliteLedger)
                    own = await chosen._run(_synchronous_level, chosen)
                    assert own == 1  # NORMAL
                    level = await conn.scalar(text("PRAGMA synchronous"))
                    assert level == 1
        finally:
            await chosen.close()
            await engine.dispose()
