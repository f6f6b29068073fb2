"""Leases: a job that one instance at a time runs, coordinated through the database.

A lease is a row of `api_leases`: its name, the instance that holds it and
until when. An instance takes a lease that is free, expired or its own with
one conditional update, and renews it each time it runs the job; a lease whose
holder died expires and is taken by another instance. Two instances never
both hold a lease at one moment (as far as their clocks agree), so a job
under a lease runs on one instance at a time; a job must still tolerate a
second run (its holder may stall past the expiry), which its writes do by
being idempotent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from sqlalchemy import Table, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from ai_service.billing.ledger import utcnow
from ai_service.storage.db import DB_ERRORS
from ai_service.storage.models import ApiLease

LEASES = cast(Table, ApiLease.__table__)


async def take(engine: AsyncEngine, name: str, holder: str, seconds: float) -> bool:
    """Take or renew the lease `name` for `seconds`; returns whether `holder` holds it."""
    now = utcnow()
    until = now + dt.timedelta(seconds=seconds)
    async with engine.begin() as conn:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        await conn.execute(
            insert(LEASES)
            .values(name=name, holder=holder, expires_at=now)
            .on_conflict_do_nothing(index_elements=[LEASES.c.name])
        )
        taken = await conn.execute(
            update(LEASES)
            .where(
                LEASES.c.name == name,
                or_(LEASES.c.holder == holder, LEASES.c.expires_at <= now),
            )
            .values(holder=holder, expires_at=until)
        )
    return bool(taken.rowcount)


async def release(engine: AsyncEngine, name: str, holder: str) -> None:
    """Give the lease up (at a clean shutdown), so another instance takes it at once."""
    async with engine.begin() as conn:
        await conn.execute(
            update(LEASES)
            .where(LEASES.c.name == name, LEASES.c.holder == holder)
            .values(expires_at=utcnow())
        )


async def periodically(
    engine: AsyncEngine,
    name: str,
    holder: str,
    period: float,
    job: Callable[[], Awaitable[object]],
    log: logging.Logger,
    *,
    wait_first: bool = False,
) -> None:
    """Run `job` every `period` seconds while `holder` holds the lease `name` (taken or
    renewed before each run, for three periods); forever, until cancelled. The loop
    outlives a database outage and a bug in one run, and logs them. With `wait_first`
    the first run is a period after the start."""
    if wait_first:
        await asyncio.sleep(period)
    while True:
        try:
            if await take(engine, name, holder, max(3 * period, 5)):
                await job()
        except DB_ERRORS:
            log.warning("%s: database unreachable", name)
        except Exception:
            log.exception("%s failed", name)
        await asyncio.sleep(period)
