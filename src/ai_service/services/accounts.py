"""Users and keys: the operations the CLI and the admin API share."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.auth import new_key
from ai_service.billing import ledger
from ai_service.billing.money import usd_str
from ai_service.errors import InvalidRequestError, NotFoundError
from ai_service.storage.models import ApiKey, ApiUser


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key as shown once at creation."""

    secret: str
    prefix: str
    user: str


async def get_user(session: AsyncSession, name: str) -> ApiUser:
    """Raises `NotFoundError`."""
    user = await session.scalar(select(ApiUser).where(ApiUser.name == name))
    if user is None:
        raise NotFoundError(f"No user named '{name}'.")
    return user


async def create_user(session: AsyncSession, name: str, balance: int = 0) -> NewKey:
    """Create a user with a first key and an opening top-up (nano-USD)."""
    name = name.strip()
    if not name:
        raise InvalidRequestError("A user name cannot be empty.", param="name")
    if balance < 0:
        raise InvalidRequestError("The opening balance cannot be negative.", param="balance")
    user = ApiUser(name=name, usd_available=0, usd_reserved=0, disabled=False)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise InvalidRequestError(f"A user named '{name}' exists already.", param="name") from exc
    key = await _add_key(session, user, "default")
    if balance > 0:
        await ledger.topup(await session.connection(), user.id, balance, "opening balance")
    await session.commit()
    return key


async def _add_key(session: AsyncSession, user: ApiUser, name: str | None) -> NewKey:
    secret, prefix, digest = new_key()
    session.add(ApiKey(user_id=user.id, prefix=prefix, key_hash=digest, name=name))
    await session.flush()
    return NewKey(secret=secret, prefix=prefix, user=user.name)


async def create_key(session: AsyncSession, user_name: str, name: str | None = None) -> NewKey:
    user = await get_user(session, user_name)
    key = await _add_key(session, user, name)
    await session.commit()
    return key


async def revoke_key(session: AsyncSession, prefix: str) -> ApiKey:
    """Revoke the key with this visible prefix. Raises `NotFoundError`."""
    key = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        raise NotFoundError(f"No key with prefix '{prefix}'.")
    if key.revoked_at is None:
        key.revoked_at = dt.datetime.now(dt.UTC)
        await session.commit()
    return key


async def topup(
    session: AsyncSession, user_name: str, amount: int, note: str | None = None
) -> ApiUser:
    """Add `amount` nano-USD to a user's balance through the ledger."""
    if amount <= 0:
        raise InvalidRequestError("A top-up must be a positive amount.", param="amount")
    user = await get_user(session, user_name)
    await ledger.topup(await session.connection(), user.id, amount, note)
    await session.commit()
    await session.refresh(user)
    return user


async def set_disabled(session: AsyncSession, user_name: str, disabled: bool) -> ApiUser:
    user = await get_user(session, user_name)
    user.disabled = disabled
    await session.commit()
    return user


async def list_users(session: AsyncSession) -> list[ApiUser]:
    return list((await session.scalars(select(ApiUser).order_by(ApiUser.name))).all())


async def list_keys(session: AsyncSession, user_name: str | None = None) -> list[dict[str, Any]]:
    stmt = select(ApiKey, ApiUser.name).join(ApiUser, ApiUser.id == ApiKey.user_id)
    if user_name is not None:
        stmt = stmt.where(ApiUser.name == user_name)
    rows = (await session.execute(stmt.order_by(ApiKey.id))).all()
    return [key_view(key, owner) for key, owner in rows]


def key_view(key: ApiKey, owner: str) -> dict[str, Any]:
    return {
        "prefix": key.prefix,
        "user": owner,
        "name": key.name,
        "created_at": key.created_at.isoformat() if key.created_at else None,
        "revoked": key.revoked_at is not None,
    }


def user_view(user: ApiUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "usd_available": usd_str(user.usd_available),
        "usd_reserved": usd_str(user.usd_reserved),
        "nano_usd_available": user.usd_available,
        "disabled": user.disabled,
        "created_at": user.created_at.isoformat() if user.created_at else None,
    }
