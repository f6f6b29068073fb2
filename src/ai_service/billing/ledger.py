"""The ledger: reservations, settlement, top-ups and reconciliation.

Every change of a balance happens in the same database transaction as the
ledger row (`api_transactions`) or request row (`api_requests`) that explains
it. Accounts are `funding` (where top-ups come from), `user:<id>` (a user's
balance, `usd_available + usd_reserved`), `revenue` (what requests cost) and
`uncollected` (the part of a cost no balance paid). At every moment, for every
user:

    usd_available + usd_reserved == sum(top-ups) - sum(charges)
    sum(charges)                 == sum(cost - uncollected) of the user's rows
    sum(uncollected transfers)   == sum(uncollected) of the user's rows
    usd_available >= 0 and usd_reserved >= 0

The charge of a request is what the provider bills (`Settlement.cost`), taken
first from its reservation and then from the rest of the balance; what the
balance cannot cover is recorded as uncollected, never dropped (`collect`).

Worked example (amounts in nano-USD): a user tops up 1_000_000 (funding ->
user:1). A request reserves 300_000: available 700_000, reserved 300_000, and
a `pending` request row records the 300_000. The answer costs 120_000: in one
transaction the row becomes `ok` with cost 120_000, reserved drops by 300_000,
available rises by 180_000 (to 880_000), and a charge of 120_000 (user:1 ->
revenue) is written. 880_000 + 0 == 1_000_000 - 120_000. Had it cost
1_500_000, the charge would be 1_000_000 (the reservation and all the rest of
the balance), available 0, and the row's uncollected 500_000 with a transfer
of 500_000 uncollected -> revenue.

A row is settled only while it is `pending`, and both transfers of a request
have `UNIQUE(request_id, kind)`, so no request is ever charged twice.

This module holds what every backend shares: the settlement, the rule of
collection, the columns a settlement writes, the `Ledger` interface, top-ups
and reconciliation. The backends: `sqlledger` (any database, through
SQLAlchemy; also the path of a settlement that must run more statements in its
transaction), `pgledger` (PostgreSQL's hot path) and `sqliteledger` (SQLite's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

from sqlalchemy import Table, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ai_service.billing.budgets import Budget, Standing
from ai_service.providers.base import Usage
from ai_service.storage.models import ApiRequest, ApiRequestData, ApiTransaction, ApiUser
from ai_service.waits import UNMETERED, DatabaseQueue

USERS = cast(Table, ApiUser.__table__)
REQUESTS = cast(Table, ApiRequest.__table__)
DATA = cast(Table, ApiRequestData.__table__)
TRANSACTIONS = cast(Table, ApiTransaction.__table__)

FUNDING = "funding"
REVENUE = "revenue"
UNCOLLECTED = "uncollected"

# The columns a settlement writes on its request row, in the one order every
# backend uses, with their PostgreSQL types; each is the `Settlement` field of
# the same name. `cost` is what the provider bills; `uncollected` is computed
# by the ledger (`collect`), on the locked balance.
OUTCOME: tuple[tuple[str, str], ...] = (
    ("status", "text"),
    ("http_status", "int"),
    ("cost", "bigint"),
    ("model", "text"),
    ("provider", "text"),
    ("prompt_tokens", "int"),
    ("completion_tokens", "int"),
    ("cached_tokens", "int"),
    ("cache_write_tokens", "int"),
    ("reasoning_tokens", "int"),
    ("usage_estimated", "bool"),
    ("error", "text"),
    ("duration_ms", "int"),
    ("upstream_latency_ms", "int"),
    ("ttft_ms", "int"),
    ("queue_ms", "int"),
    ("attempts", "int"),
    ("attempt_log", "text"),
    ("price_detail", "text"),
    ("credential", "text"),
)
KEPT_WHEN_NONE = frozenset({"model", "provider"})  # a None keeps the row's value

# The fields of a new `pending` row the caller gives (`Call.row()`), with their PostgreSQL types.
OPENING: tuple[tuple[str, str], ...] = (
    ("request_id", "text"),
    ("client_request_id", "text"),
    ("key_id", "bigint"),
    ("provider", "text"),
    ("requested_model", "text"),
    ("model", "text"),
    ("stream", "bool"),
    ("default_price", "bool"),
    ("instance_id", "text"),
    ("surface", "text"),
)


def user_account(user_id: int) -> str:
    return f"user:{user_id}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def collect(cost: int, reserved: int, available: int) -> tuple[int, int]:
    """(charged, uncollected) of a settlement: the rule every backend applies.

    `available` is the user's balance outside this reservation, read on the
    locked row. The cost is charged from the reservation, then from the rest of
    the balance; what neither covers is uncollected, so the balance never goes
    below zero. PostgreSQL's statements compute the same in SQL (`pgledger`).
    """
    charged = min(cost, reserved + max(available, 0))
    return charged, cost - charged


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a settlement did: whether the row was pending, what was charged, what not.

    True when the request was settled now (so `if await settle(...)` reads as before).
    `charged + uncollected` is the row's cost.
    """

    settled: bool
    charged: int = 0
    uncollected: int = 0

    def __bool__(self) -> bool:
        return self.settled


NOT_PENDING = Outcome(False)


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
    credential: str | None = None  # the pool credential that served it, by label
    error: str | None = None
    duration_ms: int | None = None
    upstream_latency_ms: int | None = None
    ttft_ms: int | None = None
    queue_ms: int = 0  # waited in the gateway's queues (`waits`)
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

    def outcome(self) -> tuple[Any, ...]:
        """The finished row's values, in the order of `OUTCOME`."""
        return tuple(getattr(self, name) for name, _ in OUTCOME)

    def add_usage(self, usage: Usage) -> Settlement:
        """Copy the normalized token counts into the row's fields."""
        self.prompt_tokens = usage.prompt_tokens
        self.completion_tokens = usage.output_tokens
        self.cached_tokens = usage.cache_read_tokens
        self.cache_write_tokens = usage.cache_write_tokens
        self.reasoning_tokens = usage.reasoning_tokens
        return self


Hook = Callable[[AsyncConnection], Awaitable[None]]
Budgets = tuple[Budget, ...]  # the budgets a reservation must stay within


class Ledger(Protocol):
    """The hot-path ledger operations, one implementation per database."""

    async def reserve_open(
        self, user_id: int, amount: int, row: dict[str, Any], budgets: Budgets = ()
    ) -> bool:
        """Reserve `amount` and open the request's `pending` row, if the balance and every
        one of `budgets` pay for it (atomic); False, and nothing written, otherwise."""
        ...

    async def spendable(self, user_id: int) -> int | None:
        """The balance a reservation may take now; None for a disabled (or removed) user."""
        ...

    async def standings(self, user_id: int, budgets: Budgets) -> list[Standing]:
        """What each of `budgets` has used in its current period, and what remains."""
        ...

    async def settle(
        self, request_id: str, user_id: int, reserved: int, s: Settlement, also: Hook | None
    ) -> Outcome: ...

    async def close(self) -> None: ...


def transfers(user_id: int, charged: int, uncollected: int) -> list[tuple[str, int, str, str]]:
    """A settlement's ledger rows (kind, amount, debit, credit): the charge, the uncollected."""
    rows = []
    if charged > 0:
        rows.append(("charge", charged, user_account(user_id), REVENUE))
    if uncollected > 0:
        rows.append(("uncollected", uncollected, UNCOLLECTED, REVENUE))
    return rows


async def log_unreserved(engine: AsyncEngine, values: dict[str, Any], s: Settlement) -> None:
    """Log a request that was refused before any reservation (bad input, 402, 503): cost 0."""
    async with engine.begin() as conn:
        await conn.execute(
            REQUESTS.insert().values(
                status=s.status,
                http_status=s.http_status,
                error=s.error,
                duration_ms=s.duration_ms,
                queue_ms=s.queue_ms,
                created_at=utcnow(),
                finished_at=utcnow(),
                attempts=0,
                **values,
            )
        )
        await store_payloads(conn, values["request_id"], s)


async def store_payloads(conn: AsyncConnection, request_id: str, s: Settlement) -> None:
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


async def make_ledger(
    engine: AsyncEngine,
    pool_size: int,
    synchronous_commit: bool = True,
    group: bool = True,
    queue: DatabaseQueue = UNMETERED,
) -> Ledger:
    """The fastest ledger for the database behind `engine`.

    With `synchronous_commit` (the default), a reservation or settlement is
    acknowledged only once it is durable on the database server. Turned off,
    it returns once committed (atomic and visible to every instance) without
    waiting for the flush to disk: a crash of the database server itself may
    then lose the last moments of commits, always whole transactions, so every
    invariant still holds after recovery, but requests already answered may
    lose their charge and their log row.

    `queue` measures (and bounds, for reservations) the waits of operations
    queued for a statement: PostgreSQL's and SQLite's group commit.
    """
    from ai_service.billing.sqlledger import SqlLedger

    if engine.dialect.name == "postgresql":
        from ai_service.billing.pgledger import PgLedger

        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return await PgLedger.connect(engine, dsn, pool_size, synchronous_commit, group, queue)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        from ai_service.billing.sqliteledger import SqliteLedger

        return SqliteLedger(engine, database, queue)
    return SqlLedger(engine)


@dataclass(frozen=True, slots=True)
class Discrepancy:
    user_id: int
    cached_balance: int  # usd_available + usd_reserved
    ledger_balance: int  # top-ups - charges
    logged_costs: int  # sum(cost - uncollected) of the user's rows
    charged: int  # sum of the user's charges
    logged_uncollected: int = 0  # sum(uncollected) of the user's rows
    uncollected: int = 0  # sum of the user's uncollected transfers


async def reconcile(conn: AsyncConnection) -> list[Discrepancy]:
    """Recompute every balance from the ledger and compare with the cached columns.

    A user is reported when available + reserved differs from top-ups minus
    charges, when the charges differ from the collected part of the logged
    request costs, when the uncollected transfers differ from the rows'
    uncollected amounts, or when a balance is negative.
    """
    kind = TRANSACTIONS.c.kind
    topups = await _sums(conn, TRANSACTIONS, TRANSACTIONS.c.amount, kind == "topup")
    charges = await _sums(conn, TRANSACTIONS, TRANSACTIONS.c.amount, kind == "charge")
    unpaid = await _sums(conn, TRANSACTIONS, TRANSACTIONS.c.amount, kind == "uncollected")
    # the request rows, with the days that retention pruned counted by their daily totals
    from ai_service.services.usage_source import usage_rows

    logged = await usage_rows(conn, lambda c: [c.user_id.is_not(None)], None, None)
    costs = await _sums(conn, logged, logged.c.cost - logged.c.uncollected, true())
    logged_unpaid = await _sums(conn, logged, logged.c.uncollected, true())
    found: list[Discrepancy] = []
    users = await conn.execute(select(USERS.c.id, USERS.c.usd_available, USERS.c.usd_reserved))
    for user_id, avail, reserved in users.all():
        charged = charges.get(user_id, 0)
        d = Discrepancy(
            user_id,
            cached_balance=avail + reserved,
            ledger_balance=topups.get(user_id, 0) - charged,
            logged_costs=costs.get(user_id, 0),
            charged=charged,
            logged_uncollected=logged_unpaid.get(user_id, 0),
            uncollected=unpaid.get(user_id, 0),
        )
        if (
            d.cached_balance != d.ledger_balance
            or d.logged_costs != d.charged
            or d.logged_uncollected != d.uncollected
            or avail < 0
            or reserved < 0
        ):
            found.append(d)
    return found


async def _sums(conn: AsyncConnection, table: Any, column: Any, where: Any) -> dict[int, int]:
    """sum(column) per user of `table` (a table or subquery), over the rows matching `where`."""
    user_id = table.c.user_id
    rows = await conn.execute(select(user_id, func.sum(column)).where(where).group_by(user_id))
    return {int(uid): int(total or 0) for uid, total in rows.all()}
