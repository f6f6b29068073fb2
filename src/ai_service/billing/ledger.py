"""The ledger: reservations, settlement, top-ups and reconciliation.

Every change of a balance happens in the same database transaction as the
ledger row (`api_transactions`) or request row (`api_requests`) that explains
it, so at every moment, for every user:

    usd_available + usd_reserved == sum(top-ups) - sum(charges)

Worked example (amounts in nano-USD): a user tops up 1_000_000 (funding ->
user:1). A request reserves 300_000: available 700_000, reserved 300_000, and
a `pending` request row records the 300_000. The answer costs 120_000: in one
transaction the row becomes `ok` with cost 120_000, reserved drops by 300_000,
available rises by 180_000 (to 880_000), and a charge of 120_000 (user:1 ->
revenue) is written. 880_000 + 0 == 1_000_000 - 120_000.

A row is settled only while it is `pending` (a conditional UPDATE), and the
charge has `UNIQUE(request_id, kind)`, so no request is ever charged twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ai_service.providers.base import Usage
from ai_service.storage.models import ApiRequest, ApiRequestData, ApiTransaction, ApiUser

USERS = cast(Table, ApiUser.__table__)
REQUESTS = cast(Table, ApiRequest.__table__)
DATA = cast(Table, ApiRequestData.__table__)
TRANSACTIONS = cast(Table, ApiTransaction.__table__)

FUNDING = "funding"
REVENUE = "revenue"


def user_account(user_id: int) -> str:
    return f"user:{user_id}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class Settlement:
    """What a finished request is charged and logged with."""

    status: str
    http_status: int
    cost: int = 0  # what the provider bills, at the price that applied
    price_detail: str | None = None  # JSON: the rates applied and the cost of each part
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    model: str | None = None
    provider: str | None = None
    attempt_log: str | None = None
    error: str | None = None
    duration_ms: int | None = None
    upstream_latency_ms: int | None = None
    ttft_ms: int | None = None
    attempts: int = 1
    request_body: str | None = None
    response_body: str | None = None
    truncated: bool = False

    def clean(self) -> Settlement:
        """Replace NUL characters, which database text columns refuse, in every text."""
        for name in ("error", "attempt_log", "request_body", "response_body", "model"):
            value = getattr(self, name)
            if value is not None and "\x00" in value:
                setattr(self, name, value.replace("\x00", "\ufffd"))
        return self

    def stripped(self) -> Settlement:
        """A copy without payloads or texts, for a settlement the database refused."""
        return replace(
            self, request_body=None, response_body=None, error="(unstorable)", attempt_log=None
        )

    def outcome(self, charge: int) -> tuple[Any, ...]:
        """The finished row's values, in the order of the hot-path statements:
        status, http_status, cost, model, provider, the five token counts,
        usage_estimated, error, duration_ms, upstream_latency_ms, ttft_ms,
        attempts, attempt_log."""
        return (
            self.status,
            self.http_status,
            charge,
            self.model,
            self.provider,
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.usage_estimated,
            self.error,
            self.duration_ms,
            self.upstream_latency_ms,
            self.ttft_ms,
            self.attempts,
            self.attempt_log,
        )

    def add_usage(self, usage: Usage) -> Settlement:
        """Copy the normalized token counts into the row's fields."""
        self.prompt_tokens = usage.prompt_tokens
        self.completion_tokens = usage.output_tokens
        self.cached_tokens = usage.cache_read_tokens
        self.cache_write_tokens = usage.cache_write_tokens
        self.reasoning_tokens = usage.reasoning_tokens
        return self


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


async def available(conn: AsyncConnection, user_id: int) -> int:
    value = await conn.scalar(select(USERS.c.usd_available).where(USERS.c.id == user_id))
    return int(value or 0)


async def open_request(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Insert the `pending` row of a request that holds a reservation."""
    await conn.execute(REQUESTS.insert().values(status="pending", created_at=utcnow(), **values))


Hook = Callable[[AsyncConnection], Awaitable[None]]


async def settle(
    engine: AsyncEngine,
    request_id: str,
    user_id: int,
    reserved: int,
    s: Settlement,
    also: Hook | None = None,
) -> bool:
    """Release the reservation, charge the cost, finish the row; False if already settled.

    The charge is capped at the reservation (the worst case the client was
    admitted for), so the balance never goes below zero. `also` runs inside the
    same transaction (e.g. storing an idempotent answer).
    """
    charge = min(s.cost, reserved)
    values: dict[str, Any] = {"attempt_log": s.attempt_log}
    if s.provider is not None:
        values["provider"] = s.provider
    async with engine.begin() as conn:
        done = await conn.execute(
            update(REQUESTS)
            .where(REQUESTS.c.request_id == request_id, REQUESTS.c.status == "pending")
            .values(
                status=s.status,
                http_status=s.http_status,
                cost=charge,
                model=s.model,
                prompt_tokens=s.prompt_tokens,
                completion_tokens=s.completion_tokens,
                cached_tokens=s.cached_tokens,
                cache_write_tokens=s.cache_write_tokens,
                reasoning_tokens=s.reasoning_tokens,
                usage_estimated=s.usage_estimated,
                error=s.error,
                duration_ms=s.duration_ms,
                upstream_latency_ms=s.upstream_latency_ms,
                ttft_ms=s.ttft_ms,
                attempts=s.attempts,
                price_detail=s.price_detail,
                finished_at=utcnow(),
                **values,
            )
        )
        if done.rowcount != 1:
            await conn.rollback()
            return False
        await conn.execute(
            update(USERS)
            .where(USERS.c.id == user_id)
            .values(
                usd_reserved=USERS.c.usd_reserved - reserved,
                usd_available=USERS.c.usd_available + (reserved - charge),
            )
        )
        if charge > 0:
            await conn.execute(
                TRANSACTIONS.insert().values(
                    user_id=user_id,
                    kind="charge",
                    amount=charge,
                    debit_account=user_account(user_id),
                    credit_account=REVENUE,
                    request_id=request_id,
                    created_at=utcnow(),
                )
            )
        await _store_payloads(conn, request_id, s)
        if also is not None:
            await also(conn)
    return True


async def log_unreserved(engine: AsyncEngine, values: dict[str, Any], s: Settlement) -> None:
    """Log a request that was refused before any reservation (bad input, 402, 503): cost 0."""
    async with engine.begin() as conn:
        await conn.execute(
            REQUESTS.insert().values(
                status=s.status,
                http_status=s.http_status,
                error=s.error,
                duration_ms=s.duration_ms,
                created_at=utcnow(),
                finished_at=utcnow(),
                attempts=0,
                **values,
            )
        )
        await _store_payloads(conn, values["request_id"], s)


async def _store_payloads(conn: AsyncConnection, request_id: str, s: Settlement) -> None:
    if s.request_body is None and s.response_body is None:
        return
    await conn.execute(
        DATA.insert().values(
            request_id=request_id,
            request_body=s.request_body,
            response_body=s.response_body,
            truncated=s.truncated,
        )
    )


async def topup(conn: AsyncConnection, user_id: int, amount: int, note: str | None = None) -> None:
    """Credit a user's balance from the funding account (amount > 0)."""
    if amount <= 0:
        raise ValueError("a top-up must be a positive amount")
    await conn.execute(
        update(USERS)
        .where(USERS.c.id == user_id)
        .values(usd_available=USERS.c.usd_available + amount)
    )
    await conn.execute(
        TRANSACTIONS.insert().values(
            user_id=user_id,
            kind="topup",
            amount=amount,
            debit_account=FUNDING,
            credit_account=user_account(user_id),
            note=note,
            created_at=utcnow(),
        )
    )


@dataclass(frozen=True, slots=True)
class Discrepancy:
    user_id: int
    cached_balance: int
    ledger_balance: int
    logged_costs: int
    charged: int


async def reconcile(conn: AsyncConnection) -> list[Discrepancy]:
    """Recompute every balance from the ledger and compare with the cached columns.

    A user is reported when available + reserved differs from top-ups minus
    charges, when the charges differ from the sum of logged request costs, or
    when a balance is negative.
    """
    topups = await _sums(conn, TRANSACTIONS.c.amount, TRANSACTIONS.c.kind == "topup")
    charges = await _sums(conn, TRANSACTIONS.c.amount, TRANSACTIONS.c.kind == "charge")
    costs = await _sums(conn, REQUESTS.c.cost, REQUESTS.c.user_id.is_not(None))
    found: list[Discrepancy] = []
    users = await conn.execute(select(USERS.c.id, USERS.c.usd_available, USERS.c.usd_reserved))
    for user_id, avail, reserved in users.all():
        ledger = int(topups.get(user_id) or 0) - int(charges.get(user_id) or 0)
        logged = int(costs.get(user_id) or 0)
        charged = int(charges.get(user_id) or 0)
        if avail + reserved != ledger or logged != charged or avail < 0 or reserved < 0:
            found.append(Discrepancy(user_id, avail + reserved, ledger, logged, charged))
    return found


async def _sums(conn: AsyncConnection, column: Any, where: Any) -> dict[int, int]:
    """sum(column) per user_id of the column's table, over the rows matching `where`."""
    user_id = column.table.c.user_id
    rows = await conn.execute(select(user_id, func.sum(column)).where(where).group_by(user_id))
    return {int(uid): int(total or 0) for uid, total in rows.all()}
