"""The outbox: events written once, claimed by the delivery workers, settled after each attempt.

The life of an event:

    pending --2xx--> delivered
       |  '--failure, attempts left--> pending (due again after a backoff)
       '----failure, no attempt left--> failed --operator's retry--> pending

A claim counts the attempt and moves `next_attempt_at` past the attempt's
deadline (`hold`): an instance killed mid-delivery leaves its event pending,
due again once the deadline passed, for any instance to deliver. An event is
thus delivered at least once; a receiver tells a second delivery by its id.

The body is built once, when the event is written, and sent as it is on every
attempt: the Standard Webhooks shape, `{"id", "type", "timestamp", "data"}`.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass
from typing import Any, cast

import orjson
from sqlalchemy import Table, case, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ai_service.storage.models import ApiWebhookEvent

EVENTS = cast(Table, ApiWebhookEvent.__table__)
STATUSES = ("pending", "delivered", "failed")
TYPES = ("balance.low", "budget.threshold", "credential.disabled", "credential.enabled")
ERROR_MAX = 500


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to write: its type, what makes it unique, whose it is, its `data`."""

    type: str
    dedup_key: str
    user_id: int | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Claim:
    """An event claimed for one delivery attempt (`attempt` counts from 1)."""

    id: int
    event_id: str
    type: str
    body: bytes
    attempt: int
    created_at: dt.datetime


def iso(moment: dt.datetime) -> str:
    return aware(moment).isoformat()


def aware(moment: dt.datetime) -> dt.datetime:
    """A time read back from the database as UTC (SQLite's come back naive)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def body(event_id: str, event_type: str, created_at: dt.datetime, data: dict[str, Any]) -> str:
    return orjson.dumps(
        {"id": event_id, "type": event_type, "timestamp": iso(created_at), "data": data}
    ).decode()


async def write(conn: AsyncConnection, event: NewEvent, now: dt.datetime) -> str | None:
    """Write `event`, due at once, unless an event of its dedup key exists: returns its new
    id, or None when it was written before (by this scan, an earlier one or another instance).
    """
    event_id = f"evt_{uuid.uuid4().hex}"
    values = {
        "event_id": event_id,
        "type": event.type,
        "dedup_key": event.dedup_key,
        "user_id": event.user_id,
        "payload": body(event_id, event.type, now, event.data),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(EVENTS)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[EVENTS.c.dedup_key])
        .returning(EVENTS.c.id)
    )
    written = (await conn.execute(stmt)).first()
    return event_id if written is not None else None


async def written(conn: AsyncConnection, keys: list[str]) -> set[str]:
    """Which of these dedup keys have an event."""
    found: set[str] = set()
    for at in range(0, len(keys), 500):
        chunk = keys[at : at + 500]
        rows = await conn.execute(select(EVENTS.c.dedup_key).where(EVENTS.c.dedup_key.in_(chunk)))
        found.update(row[0] for row in rows)
    return found


async def claim(
    engine: AsyncEngine, now: dt.datetime, hold: dt.timedelta, limit: int
) -> list[Claim]:
    """Claim up to `limit` due events for one attempt each, until `now + hold`.

    PostgreSQL skips the rows another instance is claiming (`FOR UPDATE SKIP
    LOCKED`); SQLite's transactions are serial (`BEGIN IMMEDIATE`).
    """
    async with engine.begin() as conn:
        due = (
            select(
                EVENTS.c.id,
                EVENTS.c.event_id,
                EVENTS.c.type,
                EVENTS.c.payload,
                EVENTS.c.attempts,
                EVENTS.c.created_at,
            )
            .where(EVENTS.c.status == "pending", EVENTS.c.next_attempt_at <= now)
            .order_by(EVENTS.c.next_attempt_at, EVENTS.c.id)
            .limit(limit)
        )
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        rows = (await conn.execute(due)).all()
        if not rows:
            return []
        await conn.execute(
            update(EVENTS)
            .where(EVENTS.c.id.in_([row.id for row in rows]))
            .values(attempts=EVENTS.c.attempts + 1, next_attempt_at=now + hold)
        )
    return [
        Claim(r.id, r.event_id, r.type, r.payload.encode(), r.attempts + 1, aware(r.created_at))
        for r in rows
    ]


async def delivered(engine: AsyncEngine, claimed: Claim, status: int, now: dt.datetime) -> None:
    """Record a 2xx answer: the event is delivered, whichever attempt got there."""
    async with engine.begin() as conn:
        await conn.execute(
            update(EVENTS)
            .where(EVENTS.c.id == claimed.id, EVENTS.c.status == "pending")
            .values(status="delivered", delivered_at=now, last_status=status, last_error=None)
        )


async def attempt_failed(
    engine: AsyncEngine,
    claimed: Claim,
    *,
    error: str,
    status: int | None,
    retry_at: dt.datetime,
    max_attempts: int,
) -> bool:
    """Record a failed attempt: due again at `retry_at`, or `failed` once `max_attempts`
    were made. Returns whether the event failed for good. A late answer to a claim that
    was claimed again since (its attempt count moved on) changes nothing.
    """
    give_up = claimed.attempt >= max_attempts
    async with engine.begin() as conn:
        done = await conn.execute(
            update(EVENTS)
            .where(
                EVENTS.c.id == claimed.id,
                EVENTS.c.status == "pending",
                EVENTS.c.attempts == claimed.attempt,
            )
            .values(
                status=case((EVENTS.c.attempts >= max_attempts, "failed"), else_="pending"),
                next_attempt_at=retry_at,
                last_error=error[:ERROR_MAX],
                last_status=status,
            )
        )
    return give_up and bool(done.rowcount)


async def retry(conn: AsyncConnection, event_id: str, now: dt.datetime) -> bool:
    """Make an event due now with a fresh count of attempts (an operator's retry of a failed
    event, or a delivered one sent again). Returns whether the event exists."""
    done = await conn.execute(
        update(EVENTS)
        .where(EVENTS.c.event_id == event_id)
        .values(status="pending", attempts=0, next_attempt_at=now, delivered_at=None)
    )
    return bool(done.rowcount)


def backoff(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before the next attempt after attempt number `attempt` failed: doubling from
    `base` up to `cap`, each drawn between half and all of it (jitter); a receiver's
    `Retry-After` is honoured up to `cap`."""
    delay: float = min(cap, base * 2.0 ** (attempt - 1))
    delay *= random.uniform(0.5, 1.0)  # noqa: S311  # jitter, not crypto
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay
