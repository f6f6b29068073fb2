"""Runtime objects of one gateway process, built and closed in the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ai_service.auth import KeyStore
from ai_service.billing import catalog as catalog_mod
from ai_service.billing.catalog import Catalog
from ai_service.billing.ledger import Ledger
from ai_service.billing.pricing import UsePrices
from ai_service.config import Settings
from ai_service.metrics import Metrics
from ai_service.pools import Pools
from ai_service.providers.base import Adapter
from ai_service.ratelimit import RateLimiter
from ai_service.services.response_owners import ResponseOwners
from ai_service.upstream import Upstream

if TYPE_CHECKING:
    from ai_service.tracing.spans import Tracing
    from ai_service.webhooks.runtime import Webhooks

log = logging.getLogger("ai_service")


class CatalogCache:
    """The catalog snapshot, re-read from the database every few seconds."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], refresh: float, policy: str = "refuse"
    ) -> None:
        self._sessions = sessions
        self._policy = policy
        self._refresh = refresh
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self.current = Catalog(policy=policy)

    async def get(self) -> Catalog:
        if time.monotonic() - self._loaded_at < self._refresh:
            return self.current
        async with self._lock:
            if time.monotonic() - self._loaded_at >= self._refresh:
                await self.reload()
        return self.current

    async def reload(self) -> None:
        async with self._sessions() as session:
            self.current = await catalog_mod.load(session, self._policy)
        self._loaded_at = time.monotonic()


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    keys: KeyStore
    catalog: CatalogCache
    upstream: Upstream
    adapters: dict[str, Adapter]
    instance_id: str
    ledger: Ledger
    limiter: RateLimiter
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    metrics: Metrics = field(default_factory=Metrics)
    # the providers configured with a pool of credentials (none: each its one key)
    pools: Pools = field(default_factory=lambda: Pools({}))
    # per provider, the price of each kind of server tool use it bills per use
    use_prices: Mapping[str, UsePrices] = field(default_factory=dict)
    # alerts: the webhooks' scan and deliveries (None when no webhook URL is set)
    webhooks: Webhooks | None = None
    # tracing (None when off, the default): the spans' provider and exporter
    tracing: Tracing | None = None
    # the Responses API's response owners, written in groups
    owners: ResponseOwners = field(init=False)

    def __post_init__(self) -> None:
        self.owners = ResponseOwners(self.engine, self.spawn)

    def credential_alert(self, provider: str, label: str, kind: str, detail: str) -> None:
        """A pool credential disabled (or enabled again): logged, counted, and an alert."""
        log.warning(
            "upstream credential %s", kind, extra={"provider": provider, "credential": label}
        )
        if self.webhooks is not None:
            self.webhooks.credential(provider, label, kind, detail)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` to completion even if its caller is cancelled; tracked for shutdown."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def drain(self, seconds: float = 30.0) -> None:
        """Wait for tracked tasks (settlements) before the process exits.

        Requests cancelled by the server's shutdown start their settlements as
        they unwind, and a settlement may spawn its retry: the tasks are
        awaited until none is left (or `seconds` passed).
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.sleep(0)  # let cancelled requests unwind and spawn theirs
                while self.tasks:
                    await asyncio.gather(*self.tasks, return_exceptions=True)
                    await asyncio.sleep(0)
