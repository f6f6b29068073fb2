"""Users and keys: the operations the CLI, the admin API and the dashboard share.

A key's policy is its model allow-list (`ai_service.allowlist`; None = every
model) and its expiry (None = never). Both are checked when set: patterns must
name a provider, an expiry must lie ahead (to stop a key now, revoke it).
Gateways apply a change at once on the instance that made it (the admin API,
the dashboard) and within `key_cache_seconds` on the others.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service import allowlist
from ai_service.auth import new_key
from ai_service.billing import ledger
from ai_service.billing.money import usd_str
from ai_service.errors import InvalidRequestError, NotFoundError
from ai_service.providers import REGISTRY
from ai_service.services.limits import KEEP, Keep
from ai_service.services.usage import parse_time
from ai_service.storage.models import ApiKey, ApiUser

NAME_MAX = 200


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
    """Create a user with a first key and an opening top-up (nano-USD).

    Raises `InvalidRequestError` for an empty, too long or taken name, or a negative balance.
    """
    name = name.strip()
    if not name:
        raise InvalidRequestError("A user name cannot be empty.", param="name")
    if len(name) > NAME_MAX:
        raise InvalidRequestError(f"A user name has at most {NAME_MAX} characters.", param="name")
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


@dataclass(frozen=True, slots=True)
class Policy:
    """What a key may do: the models it may use (None = every model) and when it expires
    (None = never). `KEEP` leaves a field as it is when a key is updated."""

    allowed: list[str] | Keep | None = KEEP
    expires: dt.datetime | str | Keep | None = KEEP


def allowed_patterns(patterns: list[str] | None) -> list[str] | None:
    """An allow-list as stored: its checked patterns, or None for every model.

    Raises `InvalidRequestError`.
    """
    if patterns is None:
        return None
    return list(allowlist.parse(patterns, REGISTRY, "allowed_models"))


def expiry(
    value: dt.datetime | str | None, stored: dt.datetime | None = None
) -> dt.datetime | None:
    """An expiry as stored, in UTC: ISO 8601 (a date is its midnight UTC) or Unix seconds;
    None = never. Raises `InvalidRequestError` for a time that is not one, or that has
    passed (unless it is the one `stored`, kept as it is)."""
    try:
        moment = parse_time(value)
    except ValueError as exc:
        raise InvalidRequestError(f"Invalid expiry: {exc}.", param="expires_at") from None
    if moment is not None and moment != _aware(stored) and moment <= dt.datetime.now(dt.UTC):
        raise InvalidRequestError(
            f"The expiry {moment.isoformat()} has passed; to stop a key now, revoke it.",
            param="expires_at",
        )
    return moment


async def _add_key(
    session: AsyncSession, user: ApiUser, name: str | None, policy: Policy | None = None
) -> NewKey:
    if name is not None and len(name) > NAME_MAX:
        raise InvalidRequestError(f"A key name has at most {NAME_MAX} characters.", param="name")
    secret, prefix, digest = new_key()
    key = ApiKey(user_id=user.id, prefix=prefix, key_hash=digest, name=name)
    if policy is not None:
        _apply(key, policy)
    session.add(key)
    await session.flush()
    return NewKey(secret=secret, prefix=prefix, user=user.name)


def _apply(key: ApiKey, policy: Policy) -> None:
    """Check a policy's fields (all before any is set) and set them on the key."""
    allowed = policy.allowed
    checked = None if isinstance(allowed, Keep) else allowed_patterns(allowed)
    expires = policy.expires
    moment = None if isinstance(expires, Keep) else expiry(expires, key.expires_at)
    if not isinstance(allowed, Keep):
        key.allowed_models = checked
    if not isinstance(expires, Keep):
        key.expires_at = moment


async def create_key(
    session: AsyncSession, user_name: str, name: str | None = None, policy: Policy | None = None
) -> NewKey:
    """Another key for a user, with its policy. Raises `NotFoundError`, `InvalidRequestError`."""
    user = await get_user(session, user_name)
    key = await _add_key(session, user, name, policy)
    await session.commit()
    return key


async def get_key(session: AsyncSession, prefix: str) -> ApiKey:
    """Raises `NotFoundError`."""
    key = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        raise NotFoundError(f"No key with prefix '{prefix}'.")
    return key


async def update_key(session: AsyncSession, prefix: str, policy: Policy) -> ApiKey:
    """Change a key's allow-list and expiry (`KEEP` fields stay as they are).

    Raises `NotFoundError`, `InvalidRequestError` (nothing is changed then).
    """
    key = await get_key(session, prefix)
    _apply(key, policy)
    await session.commit()
    return key


async def revoke_key(session: AsyncSession, prefix: str) -> ApiKey:
    """Revoke the key with this visible prefix (again is a no-op). Raises `NotFoundError`."""
    key = await get_key(session, prefix)
    if key.revoked_at is None:
        key.revoked_at = dt.datetime.now(dt.UTC)
        await session.commit()
    return key


async def owner_name(session: AsyncSession, key: ApiKey) -> str:
    name = await session.scalar(select(ApiUser.name).where(ApiUser.id == key.user_id))
    return name or ""


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
    """Disable (or enable again) every key of a user. Raises `NotFoundError`."""
    user = await get_user(session, user_name)
    user.disabled = disabled
    await session.commit()
    return user


async def list_users(session: AsyncSession) -> list[ApiUser]:
    return list((await session.scalars(select(ApiUser).order_by(ApiUser.name))).all())


async def list_keys(
    session: AsyncSession, user_name: str | None = None, prefix: str | None = None
) -> list[dict[str, Any]]:
    """Keys (never their secrets), optionally of one user or starting with `prefix`."""
    stmt = select(ApiKey, ApiUser.name).join(ApiUser, ApiUser.id == ApiKey.user_id)
    if user_name is not None:
        stmt = stmt.where(ApiUser.name == user_name)
    if prefix:
        stmt = stmt.where(ApiKey.prefix.startswith(prefix, autoescape=True))
    rows = (await session.execute(stmt.order_by(ApiKey.id))).all()
    return [key_view(key, owner) for key, owner in rows]


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """A stored time in UTC (SQLite returns it naive: it is UTC)."""
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    aware = _aware(value)
    return None if aware is None else aware.isoformat()


def key_view(key: ApiKey, owner: str) -> dict[str, Any]:
    expires = _aware(key.expires_at)
    return {
        "prefix": key.prefix,
        "user": owner,
        "name": key.name,
        "created_at": _iso(key.created_at),
        "revoked": key.revoked_at is not None,
        "revoked_at": _iso(key.revoked_at),
        "allowed_models": key.allowed_models,
        "expires_at": _iso(expires),
        "expired": expires is not None and expires <= dt.datetime.now(dt.UTC),
        "rpm_limit": key.rpm_limit,
        "tpm_limit": key.tpm_limit,
    }


def new_key_view(key: NewKey) -> dict[str, Any]:
    """A key just created: the only time its secret is shown."""
    return {"key": key.secret, "prefix": key.prefix, "user": key.user}


def user_view(user: ApiUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "usd_available": usd_str(user.usd_available),
        "usd_reserved": usd_str(user.usd_reserved),
        "nano_usd_available": user.usd_available,
        "nano_usd_reserved": user.usd_reserved,
        "disabled": user.disabled,
        "created_at": _iso(user.created_at),
    }
