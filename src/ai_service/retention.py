"""Retention: each day's usage totals, and the pruning of what is kept for a limited time.

The job (`run`) does two things, in this order:

1. **Daily totals.** Once a UTC day has ended (and an hour has passed) with no
   request of it still pending, what its settled requests came to is written
   to `api_usage_daily`, by user, key, provider, model and status, and
   `api_retention.rolled_until` moves past it. Usage over whole days reads
   these few rows instead of every request row; they are kept for good.
2. **Pruning**, by the configured number of days per table (None keeps all):
   request payloads (`api_request_data`), request rows (`api_requests`; only
   days already totalled, so the books and the usage queries keep counting
   them: `api_retention.pruned_until` says from when on rows are kept),
   webhook events delivered or given up, expired idempotency keys and the
   response owners past the upstream's own 30 days. Rows go in batches, each
   its own short transaction; the ledger's transfers are never pruned.

Every step is idempotent and moves its mark only after (or, for the rows,
before) its work, so a job cut at any point is finished by the next run. In
a gateway the job runs under the lease `retention` on one instance at a
time (`RetentionJob`); `ai-service db prune` runs it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ai_service import leases
from ai_service.billing.ledger import utcnow
from ai_service.config import Settings
from ai_service.storage.db import DB_ERRORS
from ai_service.storage.models import (
    ApiIdempotency,
    ApiRequest,
    ApiRequestData,
    ApiResponseOwner,
    ApiRetention,
    ApiUsageDaily,
    ApiWebhookEvent,
)

log = logging.getLogger("ai_service.retention")

REQUESTS = cast(Table, ApiRequest.__table__)
PAYLOADS = cast(Table, ApiRequestData.__table__)
DAILY = cast(Table, ApiUsageDaily.__table__)
STATE = cast(Table, ApiRetention.__table__)
EVENTS = cast(Table, ApiWebhookEvent.__table__)
IDEMPOTENCY = cast(Table, ApiIdempotency.__table__)
OWNERS = cast(Table, ApiResponseOwner.__table__)

LEASE = "retention"
# a day is totalled this long after it ends (and once none of its requests is pending)
GRACE = dt.timedelta(hours=1)
BATCH = 5000
# the upstream keeps a stored response 30 days; its owner row is kept as long
RESPONSE_OWNER_DAYS = 30
# webhook events are kept at least this long: longer than a budget's longest period
MIN_WEBHOOK_DAYS = 32
DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Policy:
    """How many days each kind of row is kept (None: for good)."""

    payload_days: int | None = None
    request_days: int | None = None
    webhook_days: int | None = None
    # idempotency keys expire after this (the gateway's `idempotency_ttl_seconds`)
    idempotency_seconds: int = 24 * 3600

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            settings.retention_payload_days,
            settings.retention_request_days,
            settings.retention_webhook_days,
            settings.idempotency_ttl_seconds,
        )


@dataclass(frozen=True, slots=True)
class Horizon:
    """Where the job stands: days before `rolled_until` are totalled in `api_usage_daily`;
    request rows before `pruned_until` are pruned (None: nothing yet)."""

    rolled_until: dt.date | None = None
    pruned_until: dt.date | None = None


@dataclass(slots=True)
class Report:
    """What one run did."""

    days_totalled: list[str] = field(default_factory=list)
    payloads: int = 0
    requests: int = 0
    webhook_events: int = 0
    idempotency_keys: int = 0
    response_owners: int = 0
    horizon: Horizon = field(default_factory=Horizon)

    def view(self) -> dict[str, Any]:
        return {
            "days_totalled": self.days_totalled,
            "deleted": {
                "payloads": self.payloads,
                "requests": self.requests,
                "webhook_events": self.webhook_events,
                "idempotency_keys": self.idempotency_keys,
                "response_owners": self.response_owners,
            },
            "totalled_until": _date(self.horizon.rolled_until),
            "requests_kept_from": _date(self.horizon.pruned_until),
        }


def _date(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


async def horizon(conn: AsyncConnection) -> Horizon:
    """Where the job stands (one primary-key read)."""
    row = (await conn.execute(select(STATE.c.rolled_until, STATE.c.pruned_until))).first()
    return Horizon() if row is None else Horizon(row[0], row[1])


async def run(engine: AsyncEngine, policy: Policy, now: dt.datetime) -> Report:
    """Total the days due, then prune what the policy no longer keeps."""
    report = Report()
    await _ensure_state(engine)
    report.days_totalled = [d.isoformat() for d in await total_days(engine, now)]
    today = now.astimezone(dt.UTC).date()
    if policy.request_days is not None:
        report.requests = await prune_requests(engine, today - policy.request_days * DAY)
    if policy.payload_days is not None:
        report.payloads += await prune_payloads(engine, midnight(today - policy.payload_days * DAY))
    if policy.webhook_days is not None:
        # an event is also what keeps its alert from firing twice: a budget's outlives its
        # period (a month at most), a lifetime budget's is kept for good
        days = max(policy.webhook_days, MIN_WEBHOOK_DAYS)
        report.webhook_events = await _prune_where(
            engine,
            EVENTS,
            EVENTS.c.id,
            EVENTS.c.status.in_(("delivered", "failed")),
            EVENTS.c.created_at < midnight(today - days * DAY),
            EVENTS.c.dedup_key.not_like("budget.threshold:%:total:%"),
        )
    expired = now - dt.timedelta(seconds=policy.idempotency_seconds)
    report.idempotency_keys = await _prune_where(
        engine, IDEMPOTENCY, IDEMPOTENCY.c.id, IDEMPOTENCY.c.created_at < expired
    )
    report.response_owners = await _prune_where(
        engine,
        OWNERS,
        OWNERS.c.response_id,
        OWNERS.c.created_at < now - dt.timedelta(days=RESPONSE_OWNER_DAYS),
    )
    async with engine.connect() as conn:
        report.horizon = await horizon(conn)
    return report


async def _ensure_state(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if (await conn.execute(select(STATE.c.id))).first() is None:
            await conn.execute(insert(STATE).values(id=1, payloads_checked_id=0))


# ---- daily totals -------------------------------------------------------------------


def _as_utc(moment: dt.datetime | str) -> dt.datetime:
    """A timestamp read back from the database, in UTC (SQLite hands back naive text)."""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


async def total_days(engine: AsyncEngine, now: dt.datetime) -> list[dt.date]:
    """Write the totals of every day that is due, oldest first; returns the days."""
    done: list[dt.date] = []
    while True:
        async with engine.begin() as conn:
            mark = (await horizon(conn)).rolled_until
            if mark is None:
                first = await conn.scalar(
                    select(REQUESTS.c.created_at).order_by(REQUESTS.c.id).limit(1)
                )
                if first is None:
                    return done
                mark = _as_utc(first).date()
            if midnight(mark) + DAY + GRACE > now:
                return done
            if not await _total_day(conn, mark):
                return done
        done.append(mark)


async def _total_day(conn: AsyncConnection, day: dt.date) -> bool:
    """Total `day` and move the mark past it, unless one of its requests is pending."""
    start, end = midnight(day), midnight(day) + DAY
    in_day = (REQUESTS.c.created_at >= start) & (REQUESTS.c.created_at < end)
    pending = await conn.scalar(
        select(REQUESTS.c.id).where(REQUESTS.c.status == "pending", in_day).limit(1)
    )
    if pending is not None:
        log.info("day not totalled yet: a request is pending", extra={"day": day.isoformat()})
        return False
    moved = await conn.execute(
        update(STATE)
        .where(STATE.c.id == 1, (STATE.c.rolled_until == day) | STATE.c.rolled_until.is_(None))
        .values(rolled_until=day + DAY)
    )
    if not moved.rowcount:  # another run got there first
        return False
    await conn.execute(delete(DAILY).where(DAILY.c.day == day))
    keys = [
        REQUESTS.c.user_id,
        REQUESTS.c.key_id,
        REQUESTS.c.provider,
        REQUESTS.c.model,
        REQUESTS.c.status,
    ]
    totals: list[ColumnElement[Any]] = [
        func.count(),
        func.coalesce(func.sum(REQUESTS.c.prompt_tokens), 0),
        func.coalesce(func.sum(REQUESTS.c.completion_tokens), 0),
        func.coalesce(func.sum(REQUESTS.c.cached_tokens), 0),
        func.coalesce(func.sum(REQUESTS.c.cost), 0),
        func.coalesce(func.sum(REQUESTS.c.uncollected), 0),
    ]
    await conn.execute(
        insert(DAILY).from_select(
            [
                "day",
                "user_id",
                "key_id",
                "provider",
                "model",
                "status",
                "requests",
                "prompt_tokens",
                "completion_tokens",
                "cached_tokens",
                "cost",
                "uncollected",
            ],
            select(literal(day, DAILY.c.day.type), *keys, *totals).where(in_day).group_by(*keys),
        )
    )
    return True


# ---- pruning ------------------------------------------------------------------------


async def _first_id_from(conn: AsyncConnection, moment: dt.datetime) -> int:
    """The smallest request id created at `moment` or later (ids follow creation times):
    a binary search over the primary key, a few dozen index reads at any size."""
    low = await conn.scalar(select(func.min(REQUESTS.c.id)))
    high = await conn.scalar(select(func.max(REQUESTS.c.id)))
    if low is None or high is None:
        return 0
    high += 1
    while low < high:
        middle = (low + high) // 2
        found = (
            await conn.execute(
                select(REQUESTS.c.created_at)
                .where(REQUESTS.c.id >= middle)
                .order_by(REQUESTS.c.id)
                .limit(1)
            )
        ).first()
        if found is None or _as_utc(found[0]) >= moment:
            high = middle
        else:
            low = middle + 1
    return int(low)


async def prune_requests(engine: AsyncEngine, before: dt.date) -> int:
    """Delete the request rows (and their payloads) of the days before `before` that are
    totalled; returns how many rows went."""
    async with engine.begin() as conn:
        state = await horizon(conn)
        if state.rolled_until is None:
            return 0
        until = min(before, state.rolled_until)
        if state.pruned_until is None or until > state.pruned_until:
            # the mark first: from here on the totals count these days, whatever is left
            await conn.execute(update(STATE).where(STATE.c.id == 1).values(pruned_until=until))
        else:
            until = state.pruned_until
        bound = await _first_id_from(conn, midnight(until))
    deleted = 0
    while True:
        async with engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(REQUESTS.c.id, REQUESTS.c.request_id)
                    .where(REQUESTS.c.id < bound, REQUESTS.c.created_at < midnight(until))
                    .order_by(REQUESTS.c.id)
                    .limit(BATCH)
                )
            ).all()
            if not rows:
                return deleted
            await conn.execute(
                delete(PAYLOADS).where(PAYLOADS.c.request_id.in_([r[1] for r in rows]))
            )
            await conn.execute(delete(REQUESTS).where(REQUESTS.c.id.in_([r[0] for r in rows])))
        deleted += len(rows)


async def prune_payloads(engine: AsyncEngine, before: dt.datetime) -> int:
    """Delete the payloads of the requests created before `before`; returns how many."""
    async with engine.connect() as conn:
        bound = await _first_id_from(conn, before)
        start = await conn.scalar(select(STATE.c.payloads_checked_id)) or 0
    deleted = 0
    while start < bound:
        end = min(start + BATCH, bound)
        async with engine.begin() as conn:
            ids = (
                select(REQUESTS.c.request_id)
                .where(REQUESTS.c.id >= start, REQUESTS.c.id < end, REQUESTS.c.created_at < before)
                .scalar_subquery()
            )
            gone = await conn.execute(delete(PAYLOADS).where(PAYLOADS.c.request_id.in_(ids)))
            await conn.execute(update(STATE).where(STATE.c.id == 1).values(payloads_checked_id=end))
        deleted += gone.rowcount or 0
        start = end
    return deleted


async def _prune_where(
    engine: AsyncEngine, table: Table, key: Any, *where: ColumnElement[bool]
) -> int:
    """Delete the rows of `table` matching `where`, `BATCH` at a time; returns how many."""
    deleted = 0
    while True:
        async with engine.begin() as conn:
            batch = select(key).where(*where).limit(BATCH).scalar_subquery()
            gone = (await conn.execute(delete(table).where(key.in_(batch)))).rowcount or 0
        deleted += gone
        if gone < BATCH:
            return deleted


# ---- the job ------------------------------------------------------------------------


class RetentionJob:
    """The job of one gateway process, run every `retention_interval_seconds` where the
    lease is held (`start()`, then `close()`)."""

    def __init__(self, engine: AsyncEngine, settings: Settings, instance_id: str) -> None:
        self.engine = engine
        self.settings = settings
        self.instance_id = instance_id
        self.policy = Policy.of(settings)
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, engine: AsyncEngine, settings: Settings, instance_id: str) -> RetentionJob:
        job = cls(engine, settings, instance_id)
        job.task = asyncio.ensure_future(
            leases.periodically(
                engine,
                LEASE,
                instance_id,
                settings.retention_interval_seconds,
                job.run_once,
                log,
                wait_first=True,  # not in the way of a start, nor of a restart loop
            )
        )
        return job

    async def run_once(self) -> None:
        report = await run(self.engine, self.policy, utcnow())
        log.info("retention run", extra=report.view())

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(*DB_ERRORS):
            await leases.release(self.engine, LEASE, self.instance_id)
