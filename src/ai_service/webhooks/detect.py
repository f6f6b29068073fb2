"""What fires an alert: the scan that finds the events that are due and writes them.

The scan runs in one instance at a time (the lease `webhooks-scan`), off the
request path: it reads balances and budgets' standings and writes the events
due to the outbox. Every event has a dedup key that is unique in the outbox,
so a scan that runs twice, or on two instances at once, writes it once.

`balance.low`: a user's balance (top-ups minus charges: `usd_available` and
what its requests in flight hold) is below its threshold: the user's own
(`api_users.low_balance_nano`), else `AI_SERVICE_LOW_BALANCE_ALERT_USD`; 0
means none. It fires once, and again only after the balance was seen at or
above the threshold (after a top-up). `api_balance_alerts` holds each user's
episode (how many times the balance went back up) and whether this episode's
event is out; the dedup key is `balance.low:{user id}:{episode}`. Both changes
are conditional on the episode read, so a scan that read an older state
changes nothing.

`budget.threshold`: a budget's used amount (as its enforcement counts it:
the period's settled spend and the reservations in flight) reached 50, 80 or
100% of its limit, or the budget refused a request (100%: what remained could
not pay for it). One event per budget, limit, period and threshold: the dedup
key is `budget.threshold:{budget id}:{period}:{limit}:{percent}`, the period
being the UTC day, week or month the budget's period started in (a rolling
window alerts at most once per calendar period of its length) or `total`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ai_service.billing import budgets
from ai_service.billing.budgets import Budget, Standing
from ai_service.billing.money import usd_str
from ai_service.services.budget_admin import standing_view
from ai_service.storage.models import ApiBalanceAlert, ApiBudget, ApiKey, ApiUser
from ai_service.webhooks import events
from ai_service.webhooks.events import NewEvent

USERS = cast(Table, ApiUser.__table__)
KEYS = cast(Table, ApiKey.__table__)
BUDGETS = cast(Table, ApiBudget.__table__)
MARKS = cast(Table, ApiBalanceAlert.__table__)
THRESHOLDS = (50, 80, 100)


@dataclass(frozen=True, slots=True)
class Written:
    event_id: str
    type: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request a budget refused: the budget's 100% for the period of `at`."""

    user_id: int
    budget: Budget
    at: dt.datetime


def period_key(budget: Budget, now: dt.datetime) -> str:
    """The calendar period a budget's alerts count in: `2026-12-01`, or `total`."""
    start = dataclasses.replace(budget, rolling=False).start(now)
    return "total" if start is None else start.date().isoformat()


def budget_key(budget: Budget, now: dt.datetime, percent: int) -> str:
    return f"budget.threshold:{budget.id}:{period_key(budget, now)}:{budget.limit}:{percent}"


def crossed(used: int, limit: int) -> list[int]:
    """The thresholds (percent) that `used` reached."""
    return [p for p in THRESHOLDS if used * 100 >= p * limit]


def budget_event(
    budget: Budget,
    used: int,
    now: dt.datetime,
    percent: int,
    owner: tuple[int, str, str | None],
    refused: bool = False,
) -> NewEvent:
    user_id, user_name, prefix = owner
    standing = Standing(budget, used, budget.start(now), budget.resets_at(now))
    return NewEvent(
        type="budget.threshold",
        dedup_key=budget_key(budget, now, percent),
        user_id=user_id,
        data={
            "user": user_name,
            "threshold": percent,
            "refused": refused,
            "budget": standing_view(standing, prefix),
        },
    )


async def scan(
    engine: AsyncEngine, default_threshold: int | None, now: dt.datetime
) -> list[Written]:
    """One scan: the balances, then the budgets. Returns the events it wrote."""
    found = await scan_balances(engine, default_threshold, now)
    return found + await scan_budgets(engine, now)


async def scan_balances(
    engine: AsyncEngine, default_threshold: int | None, now: dt.datetime
) -> list[Written]:
    """Fire `balance.low` for the users newly below their threshold; re-arm those above."""
    balance = USERS.c.usd_available + USERS.c.usd_reserved
    own = USERS.c.low_balance_nano
    threshold = own if default_threshold is None else func.coalesce(own, default_threshold)
    query = (
        select(
            USERS.c.id,
            USERS.c.name,
            balance.label("balance"),
            threshold.label("threshold"),
            MARKS.c.episode,
            MARKS.c.fired,
        )
        .select_from(USERS.outerjoin(MARKS, MARKS.c.user_id == USERS.c.id))
        .where(or_(balance < threshold, MARKS.c.fired.is_(True)))
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    written: list[Written] = []
    for row in rows:
        below = row.threshold is not None and row.balance < row.threshold
        if below and not row.fired:
            event = NewEvent(
                type="balance.low",
                dedup_key=f"balance.low:{row.id}:{row.episode or 0}",
                user_id=row.id,
                data={
                    "user": row.name,
                    "balance_usd": usd_str(row.balance),
                    "threshold_usd": usd_str(row.threshold),
                },
            )
            async with engine.begin() as conn:
                event_id = await events.write(conn, event, now)
                await _fired(conn, row.id, row.episode)
            if event_id is not None:
                written.append(Written(event_id, event.type))
        elif not below and row.fired:
            async with engine.begin() as conn:
                await conn.execute(
                    update(MARKS)
                    .where(MARKS.c.user_id == row.id, MARKS.c.episode == row.episode, MARKS.c.fired)
                    .values(episode=row.episode + 1, fired=False)
                )
    return written


async def _fired(conn: AsyncConnection, user_id: int, episode: int | None) -> None:
    """Mark the episode's event as out (unless the state moved on since it was read)."""
    if episode is None:  # the user's first alert: its state row, unless a scan wrote it since
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        await conn.execute(
            insert(MARKS)
            .values(user_id=user_id, episode=0, fired=True)
            .on_conflict_do_nothing(index_elements=[MARKS.c.user_id])
        )
        return
    await conn.execute(
        update(MARKS)
        .where(MARKS.c.user_id == user_id, MARKS.c.episode == episode, MARKS.c.fired.is_(False))
        .values(fired=True)
    )


async def scan_budgets(engine: AsyncEngine, now: dt.datetime) -> list[Written]:
    """Fire `budget.threshold` for each threshold a budget reached in its period."""
    query = (
        select(
            BUDGETS.c.id,
            BUDGETS.c.user_id,
            BUDGETS.c.key_id,
            BUDGETS.c.period,
            BUDGETS.c.rolling,
            BUDGETS.c.limit_nano,
            USERS.c.name,
            KEYS.c.prefix,
        )
        .select_from(
            BUDGETS.join(USERS, USERS.c.id == BUDGETS.c.user_id).outerjoin(
                KEYS, KEYS.c.id == BUDGETS.c.key_id
            )
        )
        .where(BUDGETS.c.limit_nano > 0, KEYS.c.revoked_at.is_(None))
        .order_by(BUDGETS.c.id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        candidates = [
            (
                Budget(r.id, r.key_id, r.period, r.rolling, r.limit_nano),
                (r.user_id, r.name, r.prefix),
            )
            for r in rows
        ]
        keys = [budget_key(b, now, p) for b, _ in candidates for p in THRESHOLDS]
        done = await events.written(conn, keys)
    written: list[Written] = []
    for budget, owner in candidates:
        if all(budget_key(budget, now, p) in done for p in THRESHOLDS):
            continue
        async with engine.begin() as conn:
            used = await budgets.used(conn, budget, owner[0], now)
            for percent in crossed(used, budget.limit):
                if budget_key(budget, now, percent) in done:
                    continue
                event = budget_event(budget, used, now, percent, owner)
                event_id = await events.write(conn, event, now)
                if event_id is not None:
                    written.append(Written(event_id, event.type))
    return written


async def write_refusals(engine: AsyncEngine, refusals: list[Refusal]) -> list[Written]:
    """Fire the 100% of each budget that refused a request (once per period and limit)."""
    written: list[Written] = []
    for refusal in refusals:
        budget, at = refusal.budget, refusal.at
        async with engine.begin() as conn:
            if await events.written(conn, [budget_key(budget, at, 100)]):
                continue
            name = await conn.scalar(select(USERS.c.name).where(USERS.c.id == refusal.user_id))
            prefix = None
            if budget.key_id is not None:
                prefix = await conn.scalar(select(KEYS.c.prefix).where(KEYS.c.id == budget.key_id))
            used = await budgets.used(conn, budget, refusal.user_id, at)
            owner = (refusal.user_id, str(name), prefix)
            event = budget_event(budget, used, at, 100, owner, refused=True)
            event_id = await events.write(conn, event, at)
        if event_id is not None:
            written.append(Written(event_id, event.type))
    return written
