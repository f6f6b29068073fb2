"""Instance liveness and recovery of the reservations of instances that died.

Every gateway process writes a heartbeat to `api_instances`. A request's
`pending` row carries the id of the instance serving it. When an instance has
not written a heartbeat for the lease (`instance_lease_seconds`, several
heartbeat periods), any other instance releases the reservations of its
pending rows through the ledger (a settlement at cost 0, status `error`): the
client of a request whose gateway died got no complete answer, so it is not
charged. An instance that is alive keeps its heartbeat fresh, so its requests are never touched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ai_service.billing import sqlledger
from ai_service.billing.ledger import REQUESTS, Settlement, utcnow
from ai_service.storage.db import DB_ERRORS
from ai_service.storage.models import ApiIdempotency, ApiInstance

log = logging.getLogger("ai_service.instances")

INSTANCES = cast(Table, ApiInstance.__table__)
IDEMPOTENCY = cast(Table, ApiIdempotency.__table__)
ABANDONED = "The gateway instance serving this request stopped before it finished."


async def heartbeat(engine: AsyncEngine, instance_id: str) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        result = await conn.execute(
            update(INSTANCES).where(INSTANCES.c.id == instance_id).values(heartbeat_at=now)
        )
        if result.rowcount == 0:
            await conn.execute(
                INSTANCES.insert().values(id=instance_id, started_at=now, heartbeat_at=now)
            )


async def leave(engine: AsyncEngine, instance_id: str) -> None:
    """Remove this instance's heartbeat at a clean shutdown (after its requests settled)."""
    async with engine.begin() as conn:
        await conn.execute(delete(INSTANCES).where(INSTANCES.c.id == instance_id))


async def recover(engine: AsyncEngine, instance_id: str, lease_seconds: float) -> int:
    """Release the pending requests of silent instances; returns how many were released."""
    cutoff = utcnow() - dt.timedelta(seconds=lease_seconds)
    async with engine.connect() as conn:
        alive = {
            row[0]
            for row in await conn.execute(
                select(INSTANCES.c.id).where(INSTANCES.c.heartbeat_at >= cutoff)
            )
        }
        alive.add(instance_id)
        pending = (
            await conn.execute(
                select(
                    REQUESTS.c.request_id,
                    REQUESTS.c.user_id,
                    REQUESTS.c.reserved,
                    REQUESTS.c.instance_id,
                ).where(REQUESTS.c.status == "pending", REQUESTS.c.created_at < cutoff)
            )
        ).all()
    released = 0
    for request_id, user_id, reserved, owner in pending:
        if owner in alive:
            continue

        async def forget(conn: AsyncConnection, request_id: str = request_id) -> None:
            await conn.execute(
                delete(IDEMPOTENCY).where(
                    IDEMPOTENCY.c.request_id == request_id, IDEMPOTENCY.c.status == "pending"
                )
            )

        abandoned = Settlement(status="error", http_status=500, error=ABANDONED, attempts=0)
        if await sqlledger.settle(engine, request_id, user_id, reserved, abandoned, forget):
            released += 1
    if released:
        async with engine.begin() as conn:
            await conn.execute(
                delete(INSTANCES).where(
                    INSTANCES.c.heartbeat_at < cutoff, INSTANCES.c.id != instance_id
                )
            )
        log.warning("released reservations of stopped instances", extra={"count": released})
    return released


async def keep_alive(
    engine: AsyncEngine, instance_id: str, period: float, lease_seconds: float
) -> None:
    """Heartbeat every `period` seconds and recover silent instances; runs until cancelled.

    Recovery waits until this instance has itself been in touch with the database
    for a whole lease: after an outage every instance needs that long to write a
    fresh heartbeat, and until then a silent instance may just be one that has
    not reconnected yet.
    """
    loop = asyncio.get_running_loop()
    in_touch_since: float | None = None
    while True:
        try:
            await heartbeat(engine, instance_id)
            if in_touch_since is None:
                in_touch_since = loop.time()
            if loop.time() - in_touch_since >= lease_seconds:
                await recover(engine, instance_id, lease_seconds)
        except DB_ERRORS:
            in_touch_since = None
            log.warning("heartbeat failed: database unreachable")
        await asyncio.sleep(period)
