"""Client `Idempotency-Key`s: a retried request replays the first answer and is charged once.

The first request with a key claims it (a row in `api_idempotency`, unique per
user and key). A successful answer is stored in the same transaction that
charges it; a failed one releases the claim, so the client may try again.
A second request with the same key, the same provider and the same body
replays the stored answer at no cost; with a different body, or sent to
another provider's path, it is refused with 409; while the first is still
running it is refused with 409 too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import Table, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ai_service.errors import IdempotencyConflictError, InvalidRequestError
from ai_service.storage.models import ApiIdempotency

TABLE: Table = ApiIdempotency.__table__  # type: ignore[assignment]  # declarative table
MAX_KEY = 255


@dataclass(frozen=True, slots=True)
class Claim:
    """A request's hold on an idempotency key."""

    user_id: int
    key: str


@dataclass(frozen=True, slots=True)
class Replay:
    """A stored answer to send again."""

    stream: bool
    response: bytes
    request_id: str


def request_hash(provider: str, raw: bytes) -> str:
    """What makes two requests the same: the provider they go to and the body's bytes."""
    return hashlib.sha256(provider.encode() + b"\n" + raw).hexdigest()


async def claim(
    engine: AsyncEngine,
    user_id: int,
    key: str,
    provider: str,
    raw: bytes,
    request_id: str,
    stream: bool,
    ttl_seconds: int,
) -> Claim | Replay:
    """Claim `key` for this request, or return the stored answer to replay.

    The request is its provider (the path's, `/ai/v1` being OpenAI's) and its body.
    Raises `IdempotencyConflictError` (409) for a different request or one in flight.
    """
    if not key or len(key) > MAX_KEY:
        raise InvalidRequestError(
            f"Idempotency-Key must be 1 to {MAX_KEY} characters.", param="Idempotency-Key"
        )
    digest = request_hash(provider, raw)
    now = dt.datetime.now(dt.UTC)
    for _ in range(2):
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    TABLE.insert().values(
                        user_id=user_id,
                        key=key,
                        body_hash=digest,
                        request_id=request_id,
                        status="pending",
                        stream=stream,
                        created_at=now,
                    )
                )
            return Claim(user_id, key)
        except IntegrityError:
            pass
        async with engine.begin() as conn:
            row = (
                await conn.execute(
                    select(TABLE).where(TABLE.c.user_id == user_id, TABLE.c.key == key)
                )
            ).first()
            if row is None:
                continue
            created = row.created_at
            if created.tzinfo is None:
                created = created.replace(tzinfo=dt.UTC)
            if (now - created).total_seconds() > ttl_seconds:
                await conn.execute(delete(TABLE).where(TABLE.c.id == row.id))
                continue
        if row.body_hash != digest:
            raise IdempotencyConflictError(
                "This Idempotency-Key was used with a different request (another body or "
                "another provider path).",
                param="Idempotency-Key",
            )
        if row.status != "done" or row.response is None:
            raise IdempotencyConflictError(
                "A request with this Idempotency-Key is still in progress; retry later.",
                param="Idempotency-Key",
            )
        return Replay(stream=row.stream, response=bytes(row.response), request_id=row.request_id)
    raise IdempotencyConflictError("This Idempotency-Key could not be claimed; retry.")


async def complete(conn: AsyncConnection, claim: Claim, response: bytes | None) -> None:
    """Store the answer (in the settlement's transaction); None releases the claim."""
    where = (TABLE.c.user_id == claim.user_id) & (TABLE.c.key == claim.key)
    if response is None:
        await conn.execute(delete(TABLE).where(where))
    else:
        await conn.execute(update(TABLE).where(where).values(status="done", response=response))


async def release(engine: AsyncEngine, claim: Claim) -> None:
    async with engine.begin() as conn:
        await complete(conn, claim, None)
