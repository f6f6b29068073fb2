"""Dashboard sessions kept by the server: opened at sign-in, closed at sign-out.

A row of `api_admin_sessions` is the SHA-256 of a session's random id and
when it expires; a cookie whose session has no row (signed out, expired, or
issued before this table existed) opens nothing. Expired rows are removed
when a session is opened.
"""

from __future__ import annotations

import hashlib
import time
from typing import cast

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ai_service.storage.models import ApiAdminSession

SESSIONS = cast(Table, ApiAdminSession.__table__)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def open_session(engine: AsyncEngine, session_id: str, seconds: int) -> None:
    """Record a new session for `seconds`, and forget the expired ones."""
    now = int(time.time())
    async with engine.begin() as conn:
        await conn.execute(delete(SESSIONS).where(SESSIONS.c.expires_at <= now))
        await conn.execute(
            SESSIONS.insert().values(id_hash=_hash(session_id), expires_at=now + seconds)
        )


async def is_open(engine: AsyncEngine, session_id: str) -> bool:
    """Whether the session was opened, not closed since, and has not expired."""
    stmt = select(SESSIONS.c.expires_at).where(SESSIONS.c.id_hash == _hash(session_id))
    async with engine.connect() as conn:
        expires = await conn.scalar(stmt)
    return expires is not None and expires > time.time()


async def close_session(engine: AsyncEngine, session_id: str) -> None:
    """End a session on every instance (signing out)."""
    async with engine.begin() as conn:
        await conn.execute(delete(SESSIONS).where(SESSIONS.c.id_hash == _hash(session_id)))
