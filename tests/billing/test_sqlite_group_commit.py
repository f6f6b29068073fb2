"""SQLite group commit: operations waiting for the ledger thread share one transaction,
each in a savepoint, so one operation's error fails that operation alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ai_service.billing import ledger
from ai_service.billing.ledger import USERS, Outcome, Settlement
from ai_service.billing.sqliteledger import SqliteLedger, Work
from ai_service.storage.db import make_engine
from tests.support.databases import SqliteTemplate


class CountingLedger(SqliteLedger):
    """Counts the transactions the ledger thread commits, and the operations of each."""

    def __init__(self, engine: AsyncEngine, path: str) -> None:
        super().__init__(engine, path)
        self.groups: list[int] = []

    def _commit(self, group: list[Work]) -> list[tuple[asyncio.Future[Any], Any, bool]]:
        self.groups.append(len(group))
        return super()._commit(group)


@pytest_asyncio.fixture
async def books(
    sqlite_template: SqliteTemplate, tmp_path: Path
) -> AsyncIterator[tuple[AsyncEngine, CountingLedger]]:
    url = sqlite_template.fresh(tmp_path)
    engine = make_engine(url)
    assert engine.url.database is not None
    chosen = CountingLedger(engine, engine.url.database)
    yield engine, chosen
    await chosen.close()
    await engine.dispose()


async def new_user(engine: AsyncEngine, balance: int) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(
            USERS.insert()
            .values(name="alice", usd_available=0, usd_reserved=0, disabled=False)
            .returning(USERS.c.id)
        )
        user_id = int(result.scalar_one())
        await ledger.topup(conn, user_id, balance)
    return user_id


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
        "instance_id": "group",
    }


async def balances(engine: AsyncEngine, user_id: int) -> tuple[int, int]:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT usd_available, usd_reserved FROM api_users WHERE id = :u"),
            {"u": user_id},
        )
        available, reserved = found.one()
    return int(available), int(reserved)


async def test_concurrent_reservations_share_commits_and_grant_exactly_the_balance(
    books: tuple[AsyncEngine, CountingLedger],
) -> None:
    engine, chosen = books
    alice = await new_user(engine, 25 * 1000)
    calls = [chosen.reserve_open(alice, 1000, row(f"r{i}")) for i in range(40)]
    granted = await asyncio.gather(*calls)
    assert sum(granted) == 25  # exactly what the balance pays, however grouped
    assert await balances(engine, alice) == (0, 25 * 1000)
    assert sum(chosen.groups) == 40
    assert len(chosen.groups) < 40  # operations waiting for the thread shared a transaction
    async with engine.connect() as conn:
        assert await ledger.reconcile(conn) == []


async def test_an_operation_that_fails_rolls_back_alone(
    books: tuple[AsyncEngine, CountingLedger],
) -> None:
    engine, chosen = books
    alice = await new_user(engine, 10**9)
    ids = [f"s{i}" for i in range(10)]
    assert all(await asyncio.gather(*(chosen.reserve_open(alice, 5000, row(r)) for r in ids)))

    def settlement(i: int) -> Settlement:
        s = Settlement(status="ok", http_status=200, cost=1000, model="m")
        if i == 6:
            s.model = {"not": "bindable"}  # type: ignore[assignment]  # sqlite3 refuses it
        return s

    chosen.groups.clear()
    results = await asyncio.gather(
        *(chosen.settle(r, alice, 5000, settlement(i), None) for i, r in enumerate(ids)),
        return_exceptions=True,
    )
    assert max(chosen.groups) > 1  # the failing settlement shared a transaction
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and results[6] is failed[0]
    assert all(r == Outcome(True, 1000, 0) for i, r in enumerate(results) if i != 6)
    # nine settled; the failed one is still pending, its reservation still held
    assert await balances(engine, alice) == (10**9 - 9 * 1000 - 5000, 5000)
    async with engine.connect() as conn:
        pending = await conn.scalar(
            text("SELECT count(*) FROM api_requests WHERE status = 'pending'")
        )
        assert pending == 1
        assert await ledger.reconcile(conn) == []
