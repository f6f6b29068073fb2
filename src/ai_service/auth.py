"""API keys: generation, hashing, lookup with a short in-memory cache.

A key is `ais-` followed by 32 url-safe random bytes (256 bits). Only its
SHA-256 is stored, with the first 12 characters as a visible prefix. Lookups go
by hash (a unique index), so comparing secrets in Python is never needed; the
admin key is compared with `hmac.compare_digest`.

A key may carry an expiry time and a model allow-list (`allowlist`). The
expiry travels with the cached key and is compared with the clock on every
request, so a key expires on time on every instance, cached or not; a change
of either (like a revocation) reaches the other instances within the cache's
`ttl`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai_service.allowlist import AllowList
from ai_service.billing.budgets import Budget
from ai_service.errors import AuthenticationError
from ai_service.ratelimit import NO_LIMITS, Limits
from ai_service.storage.models import ApiBudget, ApiKey, ApiUser

KEY_PREFIX = "ais-"
VISIBLE_CHARS = 12


def new_key() -> tuple[str, str, str]:
    """A fresh key: (secret, visible prefix, sha256 hex)."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, secret[:VISIBLE_CHARS], hash_key(secret)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode(), expected.encode())


def key_from_headers(x_api_key: str | None, authorization: str | None) -> str | None:
    """The client's key from `X-API-Key`, or else from `Authorization: Bearer`."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    key_id: int
    user_id: int
    user_name: str
    key_prefix: str
    limits: Limits = NO_LIMITS
    budgets: tuple[Budget, ...] = ()  # the key's and its user's, enforced in the reservation
    allowed: AllowList | None = None  # None: every model
    expires: float | None = None  # Unix time the key stops working at; None: never

    def expired(self) -> bool:
        return self.expires is not None and time.time() >= self.expires

    def may_use(self, provider: str, requested: str, model: str) -> bool:
        """Whether the key's allow-list lets it use `requested`, served as `model`."""
        return self.allowed is None or self.allowed.permits(provider, requested, model)


def expiry_error(expires: float) -> AuthenticationError:
    moment = dt.datetime.fromtimestamp(expires, dt.UTC).isoformat()
    return AuthenticationError(
        f"This API key expired at {moment}; ask the operator for a new one.", code="key_expired"
    )


class KeyStore:
    """Resolves keys to principals, caching hits (and misses) for a few seconds.

    A revoked key or disabled user stops working within `ttl` seconds on every
    instance; with `ttl=0` every request reads the database.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl: float) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._loading: dict[str, asyncio.Future[Principal | None]] = {}

    async def authenticate(self, secret: str | None) -> Principal:
        """Raises `AuthenticationError` for a missing, unknown, revoked, expired or disabled
        key."""
        if not secret:
            raise AuthenticationError(
                "Missing API key: send it in the X-API-Key header or as a Bearer token."
            )
        digest = hash_key(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            principal = await self._load(digest, now)
        if principal is None:
            raise AuthenticationError("Invalid API key, or the key was revoked.")
        if principal.expires is not None and principal.expired():
            raise expiry_error(principal.expires)
        return principal

    async def _load(self, digest: str, now: float) -> Principal | None:
        """One database lookup per key at a time, however many requests wait for it."""
        pending = self._loading.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._loading[digest] = future
        try:
            principal = await self._lookup(digest)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited failure is not reported
            raise
        finally:
            del self._loading[digest]
        future.set_result(principal)
        if self._ttl > 0:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, principal)
        return principal

    def forget(self) -> None:
        self._cache.clear()

    async def _lookup(self, digest: str) -> Principal | None:
        stmt = (
            select(
                ApiKey.id,
                ApiKey.prefix,
                ApiUser.id,
                ApiUser.name,
                ApiKey.rpm_limit,
                ApiKey.tpm_limit,
                ApiUser.rpm_limit,
                ApiUser.tpm_limit,
                ApiKey.allowed_models,
                ApiKey.expires_at,
            )
            .join(ApiUser, ApiUser.id == ApiKey.user_id)
            .where(
                ApiKey.key_hash == digest,
                ApiKey.revoked_at.is_(None),
                ApiUser.disabled.is_(False),
            )
        )
        async with self._sessions() as session:
            row = (await session.execute(stmt)).first()
            if row is None:
                return None
            budgets = await load_budgets(session, row[2], row[0])
        return Principal(
            key_id=row[0],
            key_prefix=row[1],
            user_id=row[2],
            user_name=row[3],
            limits=Limits(key_rpm=row[4], key_tpm=row[5], user_rpm=row[6], user_tpm=row[7]),
            allowed=None if row[8] is None else AllowList.of(row[8]),
            expires=None if row[9] is None else unix_time(row[9]),
            budgets=budgets,
        )


def unix_time(moment: dt.datetime) -> float:
    """A stored time as Unix seconds (SQLite returns it naive: it is UTC)."""
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)).timestamp()


async def load_budgets(session: AsyncSession, user_id: int, key_id: int) -> tuple[Budget, ...]:
    """The budgets a key's requests must stay within: its own and its user's."""
    rows = await session.execute(
        select(
            ApiBudget.id,
            ApiBudget.key_id,
            ApiBudget.period,
            ApiBudget.rolling,
            ApiBudget.limit_nano,
        )
        .where(
            ApiBudget.user_id == user_id,
            (ApiBudget.key_id == key_id) | ApiBudget.key_id.is_(None),
        )
        .order_by(ApiBudget.id)
    )
    return tuple(Budget(*r) for r in rows.all())
