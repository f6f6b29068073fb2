"""The operator's surface of rate limits: read and set the limits of a user or a key."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.errors import InvalidRequestError, NotFoundError
from ai_service.ratelimit import MAX_LIMIT
from ai_service.storage.models import ApiKey, ApiUser


class Keep(Enum):
    """Leave a limit as it is."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


@dataclass(frozen=True, slots=True)
class LimitSetting:
    """The stored limits of one user or key (None = not set, 0 = unlimited)."""

    scope: str  # "user" or "key"
    name: str  # the user's name or the key's prefix
    rpm: int | None
    tpm: int | None

    def view(self) -> dict[str, str | int | None]:
        return {"scope": self.scope, "name": self.name, "rpm": self.rpm, "tpm": self.tpm}


def _check(value: int | Keep | None, param: str) -> None:
    if value is KEEP or value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
        raise InvalidRequestError(
            f"A {param} limit must be a whole number from 0 (unlimited) to {MAX_LIMIT}, "
            "or none to clear it.",
            param=param,
        )


async def _target(
    session: AsyncSession, user: str | None, key_prefix: str | None
) -> ApiUser | ApiKey:
    if (user is None) == (key_prefix is None):
        raise InvalidRequestError("Name either a user or a key prefix.", param="user")
    if user is not None:
        found_user = await session.scalar(select(ApiUser).where(ApiUser.name == user))
        if found_user is None:
            raise NotFoundError(f"No user named '{user}'.")
        return found_user
    found_key = await session.scalar(select(ApiKey).where(ApiKey.prefix == key_prefix))
    if found_key is None:
        raise NotFoundError(f"No key with prefix '{key_prefix}'.")
    return found_key


def _setting(row: ApiUser | ApiKey) -> LimitSetting:
    if isinstance(row, ApiUser):
        return LimitSetting("user", row.name, row.rpm_limit, row.tpm_limit)
    return LimitSetting("key", row.prefix, row.rpm_limit, row.tpm_limit)


async def get_limits(
    session: AsyncSession, *, user: str | None = None, key_prefix: str | None = None
) -> LimitSetting:
    """The stored limits of a user or a key. Raises `NotFoundError`, `InvalidRequestError`."""
    return _setting(await _target(session, user, key_prefix))


async def set_limits(
    session: AsyncSession,
    *,
    user: str | None = None,
    key_prefix: str | None = None,
    rpm: int | Keep | None = KEEP,
    tpm: int | Keep | None = KEEP,
) -> LimitSetting:
    """Set a user's or a key's limits: a number (0 = unlimited), None to clear, KEEP to keep.

    Commits. Gateways apply the change within `key_cache_seconds`.
    Raises `NotFoundError`, `InvalidRequestError`.
    """
    _check(rpm, "rpm")
    _check(tpm, "tpm")
    row = await _target(session, user, key_prefix)
    if not isinstance(rpm, Keep):
        row.rpm_limit = rpm
    if not isinstance(tpm, Keep):
        row.tpm_limit = tpm
    await session.commit()
    return _setting(row)
