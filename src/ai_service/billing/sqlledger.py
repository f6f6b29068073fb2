"""The ledger over SQLAlchemy: any database, several statements in one transaction.

The reference implementation of `ledger.Ledger`. The hot paths (`pgledger`,
`sqliteledger`) use it for a settlement that must run more statements in its
transaction (`also`: storing an idempotent answer, the lease recovery's
cleanup) and for the reservations of users with budgets (`budgets`); SQLite
in memory uses it for everything.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ai_service.billing import budgets
from ai_service.billing.ledger import (
    KEPT_WHEN_NONE,
    NOT_PENDING,
    OUTCOME,
    REQUESTS,
    TRANSACTIONS,
    USERS,
    Budgets,
    Hook,
    Outcome,
    Settlement,
    collect,
    store_payloads,
    transfers,
    utcnow,
)


async def reserve(conn: AsyncConnection, user_id: int, amount: int) -> bool:
    """Move `amount` from available to reserved if the balance covers it (atomic)."""
    result = await conn.execute(
        update(USERS)
        .where(
            USERS.c.id == user_id,
            USERS.c.usd_available >= amount,
            USERS.c.disabled.is_(False),
        )
        .values(
            usd_available=USERS.c.usd_available - amount,
            usd_reserved=USERS.c.usd_reserved + amount,
        )
    )
    return bool(result.rowcount == 1)


async def spendable(conn: AsyncConnection, user_id: int) -> int | None:
    """The user's available balance; None when the user is disabled or does not exist."""
    row = (
        await conn.execute(
            select(USERS.c.usd_available).where(USERS.c.id == user_id, USERS.c.disabled.is_(False))
        )
    ).first()
    return None if row is None else int(row[0])


async def open_request(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Insert the `pending` row of a request that holds a reservation."""
    await conn.execute(REQUESTS.insert().values(status="pending", created_at=utcnow(), **values))


async def settle(
    engine: AsyncEngine,
    request_id: str,
    user_id: int,
    reserved: int,
    s: Settlement,
    also: Hook | None = None,
) -> Outcome:
    """Release the reservation, charge the cost, finish the row; NOT_PENDING if already settled.

    The user's balance row is locked first (on SQLite the whole database is,
    by `BEGIN IMMEDIATE`), then the charge is collected from it (`collect`).
    `also` runs inside the same transaction (e.g. storing an idempotent answer).
    """
    async with engine.begin() as conn:
        balance = await conn.scalar(
            select(USERS.c.usd_available).where(USERS.c.id == user_id).with_for_update()
        )
        charged, uncollected = collect(s.cost, reserved, int(balance or 0))
        values = {
            name: value
            for (name, _), value in zip(OUTCOME, s.outcome(), strict=True)
            if value is not None or name not in KEPT_WHEN_NONE
        }
        done = (
            await conn.execute(
                update(REQUESTS)
                .where(
                    REQUESTS.c.request_id == request_id,
                    REQUESTS.c.user_id == user_id,
                    REQUESTS.c.status == "pending",
                )
                .values(uncollected=uncollected, finished_at=utcnow(), **values)
                .returning(REQUESTS.c.key_id, REQUESTS.c.created_at)
            )
        ).first()
        if done is None:
            await conn.rollback()
            return NOT_PENDING
        key_id, started = done
        if s.cost > 0 and key_id is not None:
            await add_spend(conn, user_id, key_id, started, s.cost)
        await conn.execute(
            update(USERS)
            .where(USERS.c.id == user_id)
            .values(
                usd_reserved=USERS.c.usd_reserved - reserved,
                usd_available=USERS.c.usd_available + (reserved - charged),
            )
        )
        for kind, amount, debit, credit in transfers(user_id, charged, uncollected):
            await conn.execute(
                TRANSACTIONS.insert().values(
                    user_id=user_id,
                    kind=kind,
                    amount=amount,
                    debit_account=debit,
                    credit_account=credit,
                    request_id=request_id,
                    created_at=utcnow(),
                )
            )
        await store_payloads(conn, request_id, s)
        if also is not None:
            await also(conn)
    return Outcome(True, charged, uncollected)


async def add_spend(
    conn: AsyncConnection, user_id: int, key_id: int, started: Any, cost: int
) -> None:
    """Add a settled cost to its key's hour (the hour the request started)."""
    if isinstance(started, str):  # SQLite's text, as the hot path wrote it
        started = dt.datetime.fromisoformat(started).replace(tzinfo=dt.UTC)
    elif started.tzinfo is None:
        started = started.replace(tzinfo=dt.UTC)
    spend = budgets.SPEND
    values = {"key_id": key_id, "hour": budgets.hour_of(started), "user_id": user_id, "spent": cost}
    dialect = conn.dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"no upsert for {dialect}")
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(spend).values(**values)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[spend.c.key_id, spend.c.hour],
            set_={"spent": spend.c.spent + stmt.excluded.spent},
        )
    )


async def reserve_within(conn: AsyncConnection, user_id: int, amount: int, within: Budgets) -> bool:
    """Reserve `amount` if the balance and every budget pay for it: the user's balance row
    is locked first, so the spend read is the one no other reservation changes meanwhile."""
    await conn.execute(select(USERS.c.id).where(USERS.c.id == user_id).with_for_update())
    now = utcnow()
    for budget in within:
        if await budgets.used(conn, budget, user_id, now) + amount > budget.limit:
            return False
    return await reserve(conn, user_id, amount)


class SqlLedger:
    """Any database, through SQLAlchemy (several statements in one transaction)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def reserve_open(
        self, user_id: int, amount: int, row: dict[str, Any], budgets: Budgets = ()
    ) -> bool:
        async with self.engine.begin() as conn:
            if budgets:
                reserved = await reserve_within(conn, user_id, amount, budgets)
            else:
                reserved = await reserve(conn, user_id, amount)
            if not reserved:
                await conn.rollback()
                return False
            await open_request(conn, {**row, "user_id": user_id, "reserved": amount})
            return True

    async def spendable(self, user_id: int) -> int | None:
        async with self.engine.connect() as conn:
            return await spendable(conn, user_id)

    async def standings(self, user_id: int, within: Budgets) -> list[budgets.Standing]:
        async with self.engine.connect() as conn:
            return await budgets.standings(conn, within, user_id, utcnow())

    async def settle(
        self, request_id: str, user_id: int, reserved: int, s: Settlement, also: Hook | None
    ) -> Outcome:
        return await settle(self.engine, request_id, user_id, reserved, s, also)

    async def close(self) -> None:
        return None
