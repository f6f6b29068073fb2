"""Which user each Responses API response belongs to.

OpenAI keeps the stored responses of every user of the gateway under the
gateway's one account, and would serve any of them to any caller who knows an
id. The gateway records the user of each response it relays, and reads or
continues (`previous_response_id`) a response only for that user; to anyone
else it does not exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from ai_service.storage.db import DB_ERRORS
from ai_service.storage.models import ApiResponseOwner

log = logging.getLogger("ai_service.request")
TABLE: Table = ApiResponseOwner.__table__  # type: ignore[assignment]  # a Table, typed FromClause


class ResponseOwners:
    """The owners being recorded: written in groups, one statement for all that are waiting.

    `record` queues a response's owner; one writer task (started by `spawn`, so
    a shutdown waits for it) inserts everything queued in one statement, and
    again while more arrived meanwhile. Until written, an owner is answered
    from memory, so this instance never refuses its own client's next turn.
    """

    def __init__(
        self, engine: AsyncEngine, spawn: Callable[[Coroutine[Any, Any, None]], object]
    ) -> None:
        self.engine = engine
        self._spawn = spawn
        self._queued: dict[str, tuple[int, asyncio.Future[None]]] = {}
        self._writing: dict[str, tuple[int, asyncio.Future[None]]] = {}
        self._busy = False

    def record(self, response_id: str, user_id: int) -> asyncio.Future[None]:
        """Queue `response_id`'s owner; the future is done once it is written (or failed to be:
        a lost note only hides the response)."""
        queued = self._queued.get(response_id)
        if queued is not None:
            return queued[1]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued[response_id] = (user_id, done)
        if not self._busy:
            self._busy = True
            self._spawn(self._write())
        return done

    async def owns(self, response_id: str, user_id: int) -> bool:
        """Whether `response_id` was created through the gateway for `user_id`."""
        pending = self._queued.get(response_id) or self._writing.get(response_id)
        if pending is not None:
            return pending[0] == user_id
        return await owns(self.engine, response_id, user_id)

    async def _write(self) -> None:
        try:
            while self._queued:
                self._writing, self._queued = self._queued, {}
                rows = [(rid, user) for rid, (user, _done) in self._writing.items()]
                await write(self.engine, rows)
                for _user, done in self._writing.values():
                    if not done.done():
                        done.set_result(None)
                self._writing = {}
        finally:
            self._busy = False
            for _user, done in [*self._writing.values(), *self._queued.values()]:
                if not done.done():  # cancelled by a shutdown: nobody waits in vain
                    done.set_result(None)


async def write(engine: AsyncEngine, rows: list[tuple[str, int]]) -> None:
    """Insert owners (an id already recorded keeps its owner); a failure is logged only."""
    now = dt.datetime.now(dt.UTC)
    values = [{"response_id": rid, "user_id": user, "created_at": now} for rid, user in rows]
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(TABLE).values(values).on_conflict_do_nothing(index_elements=["response_id"])
            )
    except DB_ERRORS:
        log.warning("could not record %d responses' owners", len(rows))


async def owns(engine: AsyncEngine, response_id: str, user_id: int) -> bool:
    """Whether `response_id` was created through the gateway for `user_id`."""
    async with engine.connect() as conn:
        owner = await conn.scalar(select(TABLE.c.user_id).where(TABLE.c.response_id == response_id))
    return owner == user_id
