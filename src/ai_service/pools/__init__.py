"""Upstream capacity: several credentials per provider, chosen per attempt, health shared.

    credentials.py  a pool entry (`CredentialSpec`) and its key: given, from a variable,
                    or encrypted with AI_SERVICE_CREDENTIALS_KEY
    headroom.py     the requests and tokens a credential may still send (provider headers)
    breaker.py      a credential's circuit breaker
    pool.py         one provider's pool: choose, learn from each answer, disable, enable
    shared.py       breaker, block and disabled state shared through Redis

`Pools` holds every provider's pool for the app. A provider configured the
old way (one `OPENAI_API_KEY`) has no pool: its requests take the path they
always took. A provider with a `pools` entry in the settings has one, even of
a single credential.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ai_service.pools.breaker import Breaker
from ai_service.pools.credentials import (
    Credential,
    CredentialError,
    CredentialSpec,
    decrypt_key,
    encrypt_key,
    resolve,
)
from ai_service.pools.headroom import Window
from ai_service.pools.pool import Member, Notify, Pool, retarget
from ai_service.pools.shared import SharedState
from ai_service.providers import REGISTRY
from ai_service.providers.base import Adapter, ProviderConfig

if TYPE_CHECKING:
    from ai_service.config import Settings

__all__ = [
    "Credential",
    "CredentialError",
    "CredentialSpec",
    "Member",
    "Pool",
    "Pools",
    "SharedState",
    "build",
    "decrypt_key",
    "encrypt_key",
    "retarget",
    "shared_state",
]

log = logging.getLogger("ai_service.pools")


class Pools:
    """Every provider's pool, by provider; finds the member an adapter belongs to."""

    def __init__(self, pools: Mapping[str, Pool], shared: SharedState | None = None) -> None:
        self.pools = dict(pools)
        self.shared = shared
        self._members = {
            id(m.adapter): (pool, m) for pool in self.pools.values() for m in pool.members
        }
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, provider: str) -> Pool | None:
        return self.pools.get(provider)

    def primaries(self) -> dict[str, Adapter]:
        """The adapter each pooled provider's requests are built with (its first credential)."""
        return {name: pool.primary.adapter for name, pool in self.pools.items()}

    def observe(self, adapter: Adapter, headers: Mapping[str, str]) -> None:
        """The upstream's hook: every answer's headers, for the member that sent it."""
        found = self._members.get(id(adapter))
        if found is not None:
            found[0].observe(found[1], headers)

    async def fresh(self, pool: Pool) -> None:
        """Read the shared state when this instance's copy is stale (one round trip)."""
        shared = self.shared
        if shared is not None and shared.stale(pool, time.time()):
            await shared.read(pool)

    def publish(self, pool: Pool) -> None:
        """Share the pool's state changes, in the background (never on a request's path)."""
        shared = self.shared
        if shared is not None and pool.dirty:
            pool.dirty = False
            task = asyncio.ensure_future(shared.write(pool))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def share(self, pool: Pool) -> None:
        """Share the pool's state changes now (an operator's act, waited for)."""
        if self.shared is not None and pool.dirty:
            pool.dirty = False
            await self.shared.write(pool)

    def alert(self, notify: Notify) -> None:
        """Tell `notify` of every credential disabled or enabled from now on."""
        for pool in self.pools.values():
            pool.notify = notify

    def find(self, provider: str, label: str) -> tuple[Pool, Member] | None:
        pool = self.pools.get(provider)
        member = pool.by_label.get(label) if pool is not None else None
        return None if pool is None or member is None else (pool, member)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.shared is not None:
            await self.shared.aclose()


def build(
    settings: Settings, notify: Notify | None = None, shared: SharedState | None = None
) -> Pools:
    """The pools the settings configure. Raises `CredentialError` for a key it cannot have."""
    pools: dict[str, Pool] = {}
    for provider, specs in settings.pools.items():
        if not specs:
            continue
        spec = REGISTRY[provider]
        default_url, _ = settings.provider_credentials(provider)
        members = []
        for entry in specs:
            credential = resolve(entry, default_url)
            config = ProviderConfig(
                provider, credential.base_url, credential.key, spec.key_variable
            )
            members.append(member(credential, spec.adapter(config), settings))
        pools[provider] = Pool(provider, members, notify)
    return Pools(pools, shared)


def shared_state(settings: Settings) -> SharedState | None:
    """The Redis-shared state of the pools when Redis and a pool are configured."""
    if settings.redis_url is None or not any(settings.pools.values()):
        return None
    from ai_service.ratelimit.redis import connect

    client = connect(settings.redis_url.get_secret_value(), settings.rate_limit_redis_timeout)
    return SharedState(
        client,
        settings.pool_state_prefix,
        settings.pool_state_refresh_seconds,
        settings.rate_limit_redis_retry_seconds,
    )


def member(
    credential: Credential,
    adapter: Adapter,
    settings: Settings,
    clock: Callable[[], float] = time.time,
) -> Member:
    now = clock()
    return Member(
        credential,
        adapter,
        Window(credential.rpm, now),
        Window(credential.tpm, now),
        Breaker(settings.pool_breaker_failures, settings.pool_breaker_cooldown_seconds),
    )
