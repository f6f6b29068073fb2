"""Budgets: spend limits per period on a user or on one of its keys, enforced in the
reservation.

A budget's spend is read from the ledger, never reset by a job: the settled
cost of the requests that started in the period (`api_spend_hourly`, which
every settlement adds its cost to, by the hour of the request's start) plus
what the requests in flight hold reserved (the `pending` rows). A reservation
of a user with budgets locks the user's balance row, reads each budget's
spend and takes the reservation only if every budget and the balance pay for
it, in one transaction; every reservation and settlement of a user takes the
same lock, so any number of instances stay within the budget to the nano-USD.

Periods: `day`, `week` (from Monday), `month` in UTC calendar time, or, when
`rolling`, the last 24 hours, 7 days, 30 days, counted in whole hours (the
hour that began `window` ago counts whole: a rolling budget errs on the side
of the limit); `total` is a lifetime limit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ai_service.billing.money import usd_str
from ai_service.storage.models import ApiRequest, ApiSpendHourly

SPEND = cast(Table, ApiSpendHourly.__table__)
REQUESTS = cast(Table, ApiRequest.__table__)
PERIODS = ("day", "week", "month", "total")
WINDOWS = {
    "day": dt.timedelta(days=1),
    "week": dt.timedelta(days=7),
    "month": dt.timedelta(days=30),
}


@dataclass(frozen=True, slots=True)
class Budget:
    """One spend limit: on the user (`key_id` None) or on one key."""

    id: int
    key_id: int | None
    period: str
    rolling: bool
    limit: int  # nano-USD

    @property
    def scope(self) -> str:
        return "user" if self.key_id is None else "key"

    @property
    def name(self) -> str:
        """How a message names it: "this key's daily budget", "your rolling weekly budget"."""
        whose = "this key's" if self.key_id is not None else "this user's"
        if self.period == "total":
            return f"{whose} lifetime limit"
        adjective = {"day": "daily", "week": "weekly", "month": "monthly"}[self.period]
        return f"{whose} {'rolling ' if self.rolling else ''}{adjective} budget"

    def start(self, now: dt.datetime) -> dt.datetime | None:
        """The start of the period `now` is in (None: since the beginning)."""
        if self.period == "total":
            return None
        hour = now.replace(minute=0, second=0, microsecond=0)
        if self.rolling:
            return hour - WINDOWS[self.period]
        day = hour.replace(hour=0)
        if self.period == "day":
            return day
        if self.period == "week":
            return day - dt.timedelta(days=day.weekday())
        return day.replace(day=1)

    def resets_at(self, now: dt.datetime) -> dt.datetime | None:
        """When the period ends (None: a lifetime limit; a rolling window slides instead)."""
        start = self.start(now)
        if start is None or self.rolling:
            return None
        if self.period == "day":
            return start + dt.timedelta(days=1)
        if self.period == "week":
            return start + dt.timedelta(days=7)
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)

    def describe(self, used: int, now: dt.datetime) -> str:
        """The end of a 402 message: the limit, what was used, when it resets."""
        text = f"{self.name} of ${usd_str(self.limit)} (${usd_str(used)} used"
        resets = self.resets_at(now)
        if resets is not None:
            return f"{text}; it resets at {resets.strftime('%Y-%m-%dT%H:%M:%SZ')})"
        if self.rolling:
            return f"{text} in the last {WINDOWS[self.period].days * 24} hours)"
        return text + ")"


@dataclass(frozen=True, slots=True)
class Standing:
    """A budget's spend now: `used` (settled and in flight) and what remains."""

    budget: Budget
    used: int
    start: dt.datetime | None
    resets_at: dt.datetime | None

    @property
    def remaining(self) -> int:
        return max(self.budget.limit - self.used, 0)


async def used(conn: AsyncConnection, budget: Budget, user_id: int, now: dt.datetime) -> int:
    """What `budget` has spent in the period of `now`: settled costs and reservations held."""
    start = budget.start(now)
    if budget.key_id is None:
        spend_where = [SPEND.c.user_id == user_id]
        held_where = [REQUESTS.c.user_id == user_id]
    else:
        spend_where = [SPEND.c.key_id == budget.key_id]
        held_where = [REQUESTS.c.user_id == user_id, REQUESTS.c.key_id == budget.key_id]
    if start is not None:
        spend_where.append(SPEND.c.hour >= start)
    settled = await conn.scalar(
        select(func.coalesce(func.sum(SPEND.c.spent), 0)).where(*spend_where)
    )
    held = await conn.scalar(
        select(func.coalesce(func.sum(REQUESTS.c.reserved), 0)).where(
            *held_where, REQUESTS.c.status == "pending"
        )
    )
    return int(settled or 0) + int(held or 0)


async def standings(
    conn: AsyncConnection, budgets: tuple[Budget, ...], user_id: int, now: dt.datetime
) -> list[Standing]:
    """Each budget's spend in its current period."""
    return [
        Standing(b, await used(conn, b, user_id, now), b.start(now), b.resets_at(now))
        for b in budgets
    ]


def tightest(found: list[Standing]) -> Standing | None:
    """The budget with the least remaining."""
    return min(found, key=lambda s: s.remaining, default=None)


def hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
