"""The ledger invariants of DESIGN §8, checked from outside the gateway processes.

`Books(url)` opens its own short-lived connections to the test database (so it
works while the gateways run, die or lose their database) and offers the
operator's helpers the process tests need: create users, price a model, read
rows, wait for settlement, and `violations()`, which lists every broken
invariant in words.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from ai_service.billing import ledger
from ai_service.billing.money import usd_to_nano
from ai_service.instances import ABANDONED
from ai_service.services import accounts, catalog_admin
from ai_service.storage.db import async_url

T = TypeVar("T")

TEST_MODEL = "test-model"
# $100 per 1M tokens in and out: 100_000 nano-USD a token, so costs are easy to check.
TEST_PRICE = "100"
NANO_PER_TOKEN = 100_000


@dataclass(frozen=True)
class Row:
    """One `api_requests` row with the request body stored for it (if any)."""

    id: int
    request_id: str
    user: str
    instance_id: str | None
    status: str
    http_status: int | None
    cost: int
    reserved: int
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    usage_estimated: bool
    attempts: int
    stream: bool
    request_body: str | None
    uncollected: int = 0  # the part of `cost` no balance paid


class Books:
    """Direct access to a gateway database for setting up and checking a test."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def main() -> T:
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine(async_url(self.url), poolclass=NullPool)
            try:
                async with engine.begin() as conn:
                    return await work(conn)
            finally:
                await engine.dispose()

        return asyncio.run(main())

    def session(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async def main() -> T:
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine(async_url(self.url), poolclass=NullPool)
            try:
                async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                    return await work(session)
            finally:
                await engine.dispose()

        return asyncio.run(main())

    # ---- set-up ---------------------------------------------------------------

    def create_user(self, name: str, balance_usd: str) -> str:
        """A user with an opening balance; returns the key."""
        key = self.session(lambda s: accounts.create_user(s, name, usd_to_nano(balance_usd)))
        return key.secret

    def price_test_model(self, provider: str = "openai") -> None:
        self.session(
            lambda s: catalog_admin.set_price(
                s, provider, TEST_MODEL, input=TEST_PRICE, output=TEST_PRICE
            )
        )

    # ---- reading ----------------------------------------------------------------

    def scalar(self, sql: str, **params: Any) -> Any:
        async def work(conn: AsyncConnection) -> Any:
            return await conn.scalar(text(sql), params)

        return self.run(work)

    def all(self, sql: str, **params: Any) -> list[Any]:
        async def work(conn: AsyncConnection) -> list[Any]:
            return list((await conn.execute(text(sql), params)).all())

        return self.run(work)

    def rows(self, where: str = "TRUE", **params: Any) -> list[Row]:
        """Request rows matching `where` (the tests' own SQL over `r`, `u`), with payloads."""
        columns = (
            "r.id, r.request_id, u.name, r.instance_id, r.status, r.http_status, r.cost,"
            " r.reserved, r.error, r.prompt_tokens, r.completion_tokens, r.usage_estimated,"
            " r.attempts, r.stream, d.request_body, r.uncollected"
        )
        joins = (
            "api_requests r LEFT JOIN api_users u ON u.id = r.user_id"
            " LEFT JOIN api_request_data d ON d.request_id = r.request_id"
        )
        sql = f"SELECT {columns} FROM {joins} WHERE {where} ORDER BY r.id"  # noqa: S608
        found = self.all(sql, **params)
        return [Row(*values) for values in found]

    def rows_by_nonce(self) -> dict[str, list[Row]]:
        """Rows keyed by the `n=NONCE` tag in their stored request body."""
        from tests.support.directed import NONCE

        found: dict[str, list[Row]] = {}
        for row in self.rows():
            match = NONCE.search(row.request_body or "")
            if match:
                found.setdefault(match.group(1), []).append(row)
        return found

    def balance(self, name: str) -> tuple[int, int]:
        (row,) = self.all(
            "SELECT usd_available, usd_reserved FROM api_users WHERE name = :n", n=name
        )
        return int(row[0]), int(row[1])

    def charges(self, request_id: str) -> list[int]:
        found = self.all(
            "SELECT amount FROM api_transactions WHERE kind = 'charge' AND request_id = :r",
            r=request_id,
        )
        return [int(r[0]) for r in found]

    def pending(self, instance_id: str | None = None, user: str | None = None) -> list[Row]:
        where, params = ["r.status = 'pending'"], {}
        if instance_id is not None:
            # a process run's id is its configured name plus a per-run suffix
            where.append("(r.instance_id = :i OR r.instance_id LIKE :p)")
            params["i"] = instance_id
            params["p"] = instance_id + "-%"
        if user is not None:
            where.append("u.name = :u")
            params["u"] = user
        return self.rows(" AND ".join(where), **params)

    def wait_settled(self, timeout: float, user: str | None = None) -> None:
        """Wait until no row (of `user`) is `pending`. Raises AssertionError naming those left."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.pending(user=user)
            if not left:
                return
            if time.monotonic() > deadline:
                owners = sorted({str(r.instance_id) for r in left})
                raise AssertionError(
                    f"{len(left)} request rows still pending after {timeout} s "
                    f"(instances {owners}): {[r.request_id for r in left][:10]}"
                )
            time.sleep(0.1)

    # ---- the invariants -----------------------------------------------------------

    def violations(self) -> list[str]:
        """Every broken invariant of DESIGN §8, in words (empty when all hold)."""
        problems: list[str] = []

        async def reconcile(conn: AsyncConnection) -> list[ledger.Discrepancy]:
            return await ledger.reconcile(conn)

        problems += [f"reconcile: {d}" for d in self.run(reconcile)]
        for name, available, reserved in self.all(
            "SELECT name, usd_available, usd_reserved FROM api_users"
        ):
            if available < 0:
                problems.append(f"{name}: negative balance {available}")
            if reserved != 0:
                problems.append(f"{name}: usd_reserved is {reserved}, not 0")
        for request_id, count in self.all(
            "SELECT request_id, count(*) FROM api_transactions WHERE kind = 'charge'"
            " GROUP BY request_id HAVING count(*) > 1"
        ):
            problems.append(f"{request_id}: charged {count} times")
        for request_id, kind, amount, expected in self.all(
            "SELECT t.request_id, t.kind, t.amount,"
            " CASE t.kind WHEN 'charge' THEN r.cost - r.uncollected ELSE r.uncollected END"
            " FROM api_transactions t LEFT JOIN api_requests r ON r.request_id = t.request_id"
            " WHERE t.kind IN ('charge', 'uncollected')"
            " AND (r.cost IS NULL OR t.amount <> CASE t.kind WHEN 'charge'"
            " THEN r.cost - r.uncollected ELSE r.uncollected END)"
        ):
            problems.append(f"{request_id}: {kind} {amount} but the row says {expected}")
        for request_id, cost, uncollected in self.all(
            "SELECT r.request_id, r.cost, r.uncollected FROM api_requests r"
            " WHERE r.uncollected < 0 OR r.uncollected > r.cost"
            " OR (r.cost - r.uncollected > 0 AND NOT EXISTS (SELECT 1 FROM api_transactions t"
            "  WHERE t.request_id = r.request_id AND t.kind = 'charge'))"
            " OR (r.uncollected > 0 AND NOT EXISTS (SELECT 1 FROM api_transactions t"
            "  WHERE t.request_id = r.request_id AND t.kind = 'uncollected'))"
        ):
            problems.append(
                f"{request_id}: cost {cost}, uncollected {uncollected}, not in the ledger"
            )
        for row in self.rows():
            if row.status == "pending":
                problems.append(f"{row.request_id}: still pending")
            if row.status == "error" and row.cost != 0:
                problems.append(f"{row.request_id}: failed but cost {row.cost}")
            if row.status == "ok" and row.cost <= 0:
                problems.append(f"{row.request_id}: ok but free")
        for (user_id,) in self.all(
            "SELECT u.id FROM api_users u WHERE u.usd_available + u.usd_reserved <>"
            " COALESCE((SELECT sum(amount) FROM api_transactions t"
            "  WHERE t.user_id = u.id AND t.kind = 'topup'), 0)"
            " - COALESCE((SELECT sum(cost - uncollected) FROM api_requests r"
            "  WHERE r.user_id = u.id), 0)"
        ):
            problems.append(f"user {user_id}: balance != top-ups - collected costs")
        for (user_id,) in self.all(
            "SELECT u.id FROM api_users u WHERE"
            " COALESCE((SELECT sum(amount) FROM api_transactions t"
            "  WHERE t.user_id = u.id AND t.kind = 'uncollected'), 0)"
            " <> COALESCE((SELECT sum(uncollected) FROM api_requests r WHERE r.user_id = u.id), 0)"
        ):
            problems.append(f"user {user_id}: uncollected transfers != rows' uncollected")
        return problems

    def abandoned(self) -> list[Row]:
        """Rows released by another instance's lease recovery."""
        return self.rows("r.error = :e", e=ABANDONED)
