"""The ledger on PostgreSQL: one statement a reservation and one a settlement.

Each operation is a single SQL statement whose data-modifying CTEs run
atomically in one implicit transaction, sent through a plain asyncpg pool
(`pgpool`) on prepared statements: one round trip each. Concurrent operations
share one grouped statement (`batcher`, group commit). The statements are
generated from the column lists of `ledger` (`OPENING`, `OUTCOME`), and apply
its rule of collection (`ledger.collect`) in SQL, on the locked balance row; a
settlement adds its cost to the key's hour in `api_spend_hourly` (`budgets`).
A settlement that must run more statements in its transaction (`also`) goes
through the SQLAlchemy implementation, `sqlledger.settle`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ai_service.billing.batcher import Batcher
from ai_service.billing.ledger import OPENING, OUTCOME, Budgets, Hook, Outcome, Settlement
from ai_service.billing.pgpool import Connections
from ai_service.billing.sqlledger import SqlLedger
from ai_service.waits import UNMETERED, DatabaseQueue

_OPENED = ", ".join(name for name, _ in OPENING)
# what a pending row starts with besides the caller's fields
_PENDING = {
    "status": "'pending'",
    "prompt_tokens": "0",
    "completion_tokens": "0",
    "cached_tokens": "0",
    "cache_write_tokens": "0",
    "reasoning_tokens": "0",
    "cost": "0",
    "uncollected": "0",
    "usage_estimated": "false",
    "attempts": "0",
    "created_at": "now()",
}


def _set(name: str, value: str) -> str:
    """`name = value` in a settlement's UPDATE; model and provider keep the row's on NULL."""
    if name in ("model", "provider"):
        return f"{name} = COALESCE({value}, q.{name})"
    return f"{name} = {value}"


RESERVE_OPEN = f"""
WITH u AS (
    UPDATE api_users
       SET usd_available = usd_available - $1, usd_reserved = usd_reserved + $1
     WHERE id = $2 AND usd_available >= $1 AND NOT disabled
 RETURNING id
)
INSERT INTO api_requests (user_id, reserved, {_OPENED}, {", ".join(_PENDING)})
SELECT u.id, $1, {", ".join(f"${i + 3}::{t}" for i, (_, t) in enumerate(OPENING))},
       {", ".join(_PENDING.values())}
  FROM u
RETURNING id
"""

# $1 request id, $2 user id, $3 amount reserved, then OUTCOME, then the payloads.
_N = len(OUTCOME)
_COST = f"${4 + [n for n, _ in OUTCOME].index('cost')}::bigint"
_BODY = 4 + _N
SETTLE = f"""
WITH l AS (
    SELECT id, usd_available FROM api_users WHERE id = $2 FOR UPDATE
), r AS (
    UPDATE api_requests q
       SET {", ".join(_set(n, f"${i + 4}::{t}") for i, (n, t) in enumerate(OUTCOME))},
           uncollected = {_COST} - LEAST({_COST}, $3::bigint + GREATEST(l.usd_available, 0)),
           finished_at = now()
      FROM l
     WHERE q.request_id = $1 AND q.user_id = l.id AND q.status = 'pending'
 RETURNING q.user_id, q.cost - q.uncollected AS charged, q.uncollected, q.key_id,
           q.created_at, q.cost
), h AS (
    INSERT INTO api_spend_hourly AS h (key_id, hour, user_id, spent)
    SELECT key_id, date_trunc('hour', created_at, 'UTC'), user_id, cost
      FROM r WHERE cost > 0 AND key_id IS NOT NULL
        ON CONFLICT (key_id, hour) DO UPDATE SET spent = h.spent + excluded.spent
), u AS (
    UPDATE api_users
       SET usd_reserved = usd_reserved - $3::bigint,
           usd_available = usd_available + ($3::bigint - r.charged)
      FROM r
     WHERE api_users.id = r.user_id
), t AS (
    INSERT INTO api_transactions
           (user_id, kind, amount, debit_account, credit_account, request_id, created_at)
    SELECT user_id, 'charge', charged, 'user:' || user_id, 'revenue', $1, now()
      FROM r WHERE charged > 0
    UNION ALL
    SELECT user_id, 'uncollected', uncollected, 'uncollected', 'revenue', $1, now()
      FROM r WHERE uncollected > 0
), d AS (
    INSERT INTO api_request_data (request_id, request_body, response_body, truncated)
    SELECT $1, ${_BODY}::text, ${_BODY + 1}::text, ${_BODY + 2}::bool
      FROM r WHERE ${_BODY}::text IS NOT NULL OR ${_BODY + 1}::text IS NOT NULL
)
SELECT charged, uncollected FROM r
"""

# The grouped forms. Balance rows are locked in id order first (`l`), so two
# groups over the same users never deadlock. A group's reservations for one
# user are granted as a prefix that fits the balance read at the start; the
# UPDATE re-checks the whole sum on the locked row, and what it refuses falls
# back to the single statement.
RESERVE_OPEN_MANY = f"""
WITH s AS (
    SELECT * FROM unnest(
        $1::bigint[], $2::bigint[],
        {", ".join(f"${i + 3}::{t}[]" for i, (_, t) in enumerate(OPENING))}
    ) WITH ORDINALITY AS s(amount, user_id, {_OPENED}, n)
), l AS (
    SELECT id, usd_available FROM api_users
     WHERE id = ANY($2::bigint[]) AND NOT disabled ORDER BY id FOR UPDATE
), fit AS (
    SELECT * FROM (
        SELECT s.*, l.usd_available,
               sum(s.amount) OVER (PARTITION BY s.user_id ORDER BY s.n) AS running
          FROM s JOIN l ON l.id = s.user_id
    ) w WHERE running <= usd_available
), g AS (
    SELECT user_id, sum(amount)::bigint AS total FROM fit GROUP BY user_id
), u AS (
    UPDATE api_users
       SET usd_available = usd_available - g.total, usd_reserved = usd_reserved + g.total
      FROM g
     WHERE api_users.id = g.user_id AND api_users.usd_available >= g.total
 RETURNING api_users.id
)
INSERT INTO api_requests (user_id, reserved, {_OPENED}, {", ".join(_PENDING)})
SELECT fit.user_id, fit.amount, {", ".join(f"fit.{n}" for n, _ in OPENING)},
       {", ".join(_PENDING.values())}
  FROM fit JOIN u ON u.id = fit.user_id
RETURNING request_id
"""

# A group's settlements of one user are collected in the group's order, each
# from what the ones before it left: with D = reserved - cost, the balance
# after the k-th is W(k) = max(0, W(k-1) + D(k)), W(0) = the locked balance,
# whose closed form is S(k) - least(-W(0), min(S(1..k))) for S(k) the running
# sum of D; the k-th is charged W(k-1) + reserved - W(k) = ledger.collect's.
# The group's pending rows are locked (`p`) after its balance rows (`l`).
_COLUMNS = ", ".join(n for n, _ in OUTCOME)
SETTLE_MANY = f"""
WITH s AS (
    SELECT * FROM unnest(
        $1::text[], $2::bigint[], $3::bigint[],
        {", ".join(f"${i + 4}::{t}[]" for i, (_, t) in enumerate(OUTCOME))},
        ${_BODY}::text[], ${_BODY + 1}::text[], ${_BODY + 2}::bool[]
    ) WITH ORDINALITY AS s(request_id, user_id, reserved, {_COLUMNS},
                           request_body, response_body, truncated, n)
), l AS (
    SELECT id, usd_available FROM api_users
     WHERE id = ANY($2::bigint[]) ORDER BY id FOR UPDATE
), p AS (
    SELECT s.*, GREATEST(l.usd_available, 0) AS balance
      FROM api_requests q
      JOIN s ON s.request_id = q.request_id AND s.user_id = q.user_id
      JOIN l ON l.id = s.user_id
     WHERE q.status = 'pending' AND (SELECT count(*) FROM l) >= 0
       FOR UPDATE OF q
), a AS (
    SELECT p.*, sum(reserved - cost) OVER w AS run
      FROM p WINDOW w AS (PARTITION BY user_id ORDER BY n)
), b AS (
    SELECT a.*, run - LEAST(-balance, min(run) OVER w) AS after
      FROM a WINDOW w AS (PARTITION BY user_id ORDER BY n)
), c AS (
    SELECT b.*, (lag(after, 1, balance) OVER w + reserved - after)::bigint AS charged
      FROM b WINDOW w AS (PARTITION BY user_id ORDER BY n)
), r AS (
    UPDATE api_requests q
       SET {", ".join(_set(n, f"c.{n}") for n, _ in OUTCOME)},
           uncollected = c.cost - c.charged, finished_at = now()
      FROM c
     WHERE q.request_id = c.request_id AND q.status = 'pending'
 RETURNING q.request_id, q.user_id, c.reserved, q.cost - q.uncollected AS charged,
           q.uncollected, q.key_id, q.created_at, q.cost
), h AS (
    INSERT INTO api_spend_hourly AS h (key_id, hour, user_id, spent)
    SELECT key_id, date_trunc('hour', created_at, 'UTC'), min(user_id), sum(cost)::bigint
      FROM r WHERE cost > 0 AND key_id IS NOT NULL
     GROUP BY 1, 2
        ON CONFLICT (key_id, hour) DO UPDATE SET spent = h.spent + excluded.spent
), g AS (
    SELECT user_id, sum(reserved)::bigint AS reserved, sum(charged)::bigint AS charged
      FROM r GROUP BY user_id
), u AS (
    UPDATE api_users
       SET usd_reserved = usd_reserved - g.reserved,
           usd_available = usd_available + (g.reserved - g.charged)
      FROM g
     WHERE api_users.id = g.user_id
), t AS (
    INSERT INTO api_transactions
           (user_id, kind, amount, debit_account, credit_account, request_id, created_at)
    SELECT user_id, 'charge', charged, 'user:' || user_id, 'revenue', request_id, now()
      FROM r WHERE charged > 0
    UNION ALL
    SELECT user_id, 'uncollected', uncollected, 'uncollected', 'revenue', request_id, now()
      FROM r WHERE uncollected > 0
), d AS (
    INSERT INTO api_request_data (request_id, request_body, response_body, truncated)
    SELECT c.request_id, c.request_body, c.response_body, c.truncated
      FROM c JOIN r ON r.request_id = c.request_id
     WHERE c.request_body IS NOT NULL OR c.response_body IS NOT NULL
)
SELECT request_id, charged, uncollected FROM r
"""


# Statements of each kind in flight at once. With durable commits a statement holds
# the locks of its balance rows until its commit is flushed, so statements in flight
# together mostly wait for each other's flush on the busiest balance, each with a
# smaller group: one at a time is fastest (one user, 64 concurrent requests: 4 in
# flight took 0.29 transactions and 0.21 ms of database CPU per request, 1 in flight
# 0.13 and 0.12 ms, at twice the throughput). Unflushed commits release the locks at
# once, and then 4 in flight keep the gateway busier.
DURABLE_INFLIGHT = 1
ASYNC_INFLIGHT = 4


class PgLedger(SqlLedger):
    """PostgreSQL: one statement a reservation and one a settlement, over asyncpg."""

    def __init__(
        self,
        engine: AsyncEngine,
        pool: Connections,
        group: bool = True,
        inflight: int = DURABLE_INFLIGHT,
        queue: DatabaseQueue = UNMETERED,
    ) -> None:
        super().__init__(engine)
        self.pool = pool
        size = 64 if group else 1
        self._reservations: Batcher[Reservation, bool] = Batcher(
            self._reserve_one,
            self._reserve_many,
            lambda r: r[2]["request_id"],
            size=size,
            inflight=inflight,
            queue=queue,
            kind="reserve",
        )
        self._settlements: Batcher[Closing, Outcome] = Batcher(
            self._settle_one,
            self._settle_many,
            lambda c: c[0],
            size=size,
            inflight=inflight,
            queue=DatabaseQueue(queue.meter),  # a settlement waits its turn, unbounded
            kind="settle",
        )

    @classmethod
    async def connect(
        cls,
        engine: AsyncEngine,
        dsn: str,
        size: int,
        synchronous_commit: bool,
        group: bool,
        queue: DatabaseQueue = UNMETERED,
    ) -> PgLedger:
        settings = {"synchronous_commit": "on" if synchronous_commit else "off"}
        inflight = DURABLE_INFLIGHT if synchronous_commit else ASYNC_INFLIGHT
        return cls(engine, Connections(dsn, size, settings), group, inflight, queue)

    async def reserve_open(
        self, user_id: int, amount: int, row: dict[str, Any], budgets: Budgets = ()
    ) -> bool:
        if budgets:
            return await super().reserve_open(user_id, amount, row, budgets)
        return await self._reservations.submit((user_id, amount, row))

    async def _reserve_one(self, r: Reservation) -> bool:
        user_id, amount, row = r
        values = [row[name] for name, _ in OPENING]
        row_id = await self.pool.fetchval(RESERVE_OPEN, amount, user_id, *values)
        return row_id is not None

    async def _reserve_many(self, group: list[Reservation]) -> list[bool | None]:
        columns = [[r[1] for r in group], [r[0] for r in group]]
        columns += [[r[2][name] for r in group] for name, _ in OPENING]
        granted = set(await self.pool.fetchcol(RESERVE_OPEN_MANY, *columns))
        # what the group could not grant runs again alone, against the balance as it is then
        return [True if r[2]["request_id"] in granted else None for r in group]

    async def spendable(self, user_id: int) -> int | None:
        value = await self.pool.fetchval(
            "SELECT usd_available FROM api_users WHERE id = $1 AND NOT disabled", user_id
        )
        return None if value is None else int(value)

    async def settle(
        self, request_id: str, user_id: int, reserved: int, s: Settlement, also: Hook | None
    ) -> Outcome:
        if also is not None:
            return await super().settle(request_id, user_id, reserved, s, also)
        return await self._settlements.submit((request_id, user_id, reserved, s))

    async def _settle_one(self, c: Closing) -> Outcome:
        row = await self.pool.fetchrow(SETTLE, *_settle_values(c))
        return Outcome(False) if row is None else Outcome(True, row[0], row[1])

    async def _settle_many(self, group: list[Closing]) -> list[Outcome | None]:
        rows = [_settle_values(c) for c in group]
        settled = await self.pool.fetch(SETTLE_MANY, *map(list, zip(*rows, strict=True)))
        outcomes = {row[0]: Outcome(True, row[1], row[2]) for row in settled}
        return [outcomes.get(c[0], Outcome(False)) for c in group]

    async def close(self) -> None:
        await self._reservations.close()
        await self._settlements.close()
        await self.pool.close()


Reservation = tuple[int, int, dict[str, Any]]  # user id, amount, the request row's fields
Closing = tuple[str, int, int, Settlement]  # request id, user id, amount reserved, settlement


def _settle_values(c: Closing) -> tuple[Any, ...]:
    """A settlement's parameters, in the order of `SETTLE` and `SETTLE_MANY`."""
    request_id, user_id, reserved, s = c
    return (
        request_id, user_id, reserved, *s.outcome(), s.request_body, s.response_body, s.truncated
    )  # fmt: skip
