"""Which user each Responses API response belongs to.

OpenAI keeps the stored responses of every user of the gateway under the
gateway's one account, and would serve any of them to any caller who knows an
id. The gateway records the user of each response it relays, and reads or
continues (`previous_response_id`) a response only for that user; to anyone
else it does not exist.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ai_service.storage.db import DB_ERRORS
from ai_service.storage.models import ApiResponseOwner

log = logging.getLogger("ai_service.request")
TABLE: Table = ApiResponseOwner.__table__  # type: ignore[assignment]  # a Table, typed FromClause


async def record(engine: AsyncEngine, response_id: str, user_id: int) -> None:
    """Note that `response_id` belongs to `user_id` (a lost note only hides the response)."""
    try:
        async with engine.begin() as conn:
            await conn.execute(
                TABLE.insert().values(
                    response_id=response_id, user_id=user_id, created_at=dt.datetime.now(dt.UTC)
                )
            )
    except IntegrityError:
        pass  # already recorded (an idempotent repeat)
    except DB_ERRORS:
        log.warning("could not record a response's owner", extra={"response_id": response_id})


async def owns(engine: AsyncEngine, response_id: str, user_id: int) -> bool:
    """Whether `response_id` was created through the gateway for `user_id`."""
    async with engine.connect() as conn:
        owner = await conn.scalar(select(TABLE.c.user_id).where(TABLE.c.response_id == response_id))
    return owner == user_id
