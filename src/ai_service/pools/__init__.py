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
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ai_service.pools.breaker import Breaker
from ai_service.pools.credentials import (
    DEFAULT_LABEL,
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


# per provider, its credentials in order, each with where it comes from
# ("settings", "stored": the database, "environment": the provider's own variable)
Sourced = dict[str, list[tuple[Credential, str]]]


class Pools:
    """Every provider's pool, by provider; finds the member an adapter belongs to."""

    def __init__(
        self,
        pools: Mapping[str, Pool],
        shared: SharedState | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.pools = dict(pools)
        self.shared = shared
        self.settings = settings
        self.notify: Notify | None = None
        self.stored_mark: object = None  # what the stored credentials were when last taken up
        self._members: dict[int, tuple[Pool, Member]] = {}
        self._index()
        self._tasks: set[asyncio.Task[None]] = set()

    def _index(self) -> None:
        self._members = {
            id(m.adapter): (pool, m) for pool in self.pools.values() for m in pool.members
        }

    def get(self, provider: str) -> Pool | None:
        return self.pools.get(provider)

    def primaries(self) -> dict[str, Adapter]:
        """The adapter each pooled provider's requests are built with (its first credential)."""
        return {name: pool.primary.adapter for name, pool in self.pools.items()}

    def apply(self, credentials: Sourced) -> None:
        """Take a new list of credentials: a credential unchanged keeps its member (and its
        state), a new one starts afresh, a provider left without any loses its pool."""
        assert self.settings is not None
        for provider, entries in credentials.items():
            pool = self.pools.get(provider)
            old = pool.by_label if pool is not None else {}
            members = []
            for credential, source in entries:
                found = old.get(credential.label)
                if found is None or found.credential != credential:
                    found = member(credential, adapter_for(provider, credential), self.settings)
                found.source = source
                members.append(found)
            if pool is None:
                self.pools[provider] = Pool(provider, members, self.notify)
            else:
                pool.replace(members)
        for provider in [p for p in self.pools if p not in credentials]:
            del self.pools[provider]
        self._index()

    def observe(self, adapter: Adapter, headers: Mapping[str, str]) -> None:
        """The upstream's hook: every answer's headers, for the member that sent it."""
        found = self._members.get(id(adapter))
        if found is not None:
            found[0].observe(found[1], headers)

    def label_of(self, adapter: Adapter) -> str | None:
        """The label of the pool credential `adapter` sends with (None: not a pool's)."""
        found = self._members.get(id(adapter))
        return found[1].label if found is not None else None

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
        self.notify = notify
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


def adapter_for(provider: str, credential: Credential) -> Adapter:
    spec = REGISTRY[provider]
    config = ProviderConfig(provider, credential.base_url, credential.key, spec.key_variable)
    return spec.adapter(config)


def sourced(
    settings: Settings,
    stored: Mapping[str, list[CredentialSpec]],
    environ: Mapping[str, str] = os.environ,
) -> Sourced:
    """Every pooled provider's credentials: the settings' first, then the stored ones (after
    the provider's own key, labelled `default`, when the settings give it no pool).

    Raises `CredentialError` for a settings entry whose key cannot be had; a stored one
    that cannot be had is left out, and logged.
    """
    secret = settings.credentials_secret
    found: Sourced = {}
    for provider in REGISTRY:
        default_url, single = settings.provider_credentials(provider)
        entries = [
            (resolve(spec, default_url, secret, environ), "settings")
            for spec in settings.pools.get(provider, [])
        ]
        extra = stored.get(provider, [])
        if extra and not entries and single:
            entries.append((Credential(DEFAULT_LABEL, single, default_url), "environment"))
        taken = {credential.label for credential, _ in entries}
        for spec in extra:
            if spec.label in taken:
                continue  # the settings' entry of that label wins
            try:
                entries.append((resolve(spec, default_url, secret, environ), "stored"))
            except CredentialError as exc:
                log.error("pools: stored credential left out: %s", exc)
        if entries:
            found[provider] = entries
    return found


def build(
    settings: Settings,
    stored: Mapping[str, list[CredentialSpec]] | None = None,
    shared: SharedState | None = None,
) -> Pools:
    """The pools of the settings (and the stored credentials). Raises `CredentialError`
    for a settings entry whose key it cannot have."""
    pools = Pools({}, shared, settings)
    pools.apply(sourced(settings, stored or {}))
    return pools


def shared_state(settings: Settings) -> SharedState | None:
    """The Redis-shared state of the pools when Redis and a pool are configured."""
    if settings.redis_url is None:
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
