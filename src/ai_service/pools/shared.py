"""The pools' state shared by every gateway instance through Redis.

What one instance learns about a credential that the others should act on
at once (a breaker that opened or closed, a credential disabled or enabled,
a 429's block) is written to one Redis hash per provider,
`<prefix><provider>`, one field per credential label, when it changes (in
the background, never on a request's path). An instance reads the whole
hash in one round trip when its copy is older than `refresh` seconds, and
takes each credential's state that is newer than its own. Headroom is not
shared: every instance reads it from the provider's own headers, which
count every instance's use of the key.

While Redis is unreachable each instance keeps its own state (and says so
once), as the rate limiter does.
"""

from __future__ import annotations

import logging
import time

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ai_service.pools.breaker import State
from ai_service.pools.pool import Member, Pool

log = logging.getLogger("ai_service.pools")


def encode(member: Member) -> bytes:
    breaker = member.breaker
    return state_bytes(
        member.changed, member.disabled, member.blocked_until, breaker.state, breaker.since
    )


def state_bytes(
    changed: float,
    disabled: str | None = None,
    blocked_until: float = 0.0,
    breaker: State = State.CLOSED,
    since: float = 0.0,
) -> bytes:
    """One credential's shared state (the default: in service, as an operator's enable)."""
    return orjson.dumps(
        {
            "changed": changed,
            "disabled": disabled,
            "blocked_until": blocked_until,
            "breaker": breaker.value,
            "since": since,
        }
    )


def adopt(member: Member, raw: bytes | str) -> bool:
    """Take a shared state newer than the member's own; whether it was taken."""
    try:
        data = orjson.loads(raw)
        changed = float(data["changed"])
        if changed <= member.changed:
            return False
        state = State(data["breaker"])
        member.breaker.adopt(state, float(data["since"]))
        member.disabled = data["disabled"]
        member.blocked_until = float(data["blocked_until"])
    except (ValueError, KeyError, TypeError):
        return False
    member.changed = changed
    return True


class SharedState:
    """Reads and writes the pools' hashes; fails open to per-instance state."""

    def __init__(
        self, client: Redis, prefix: str, refresh: float, retry_seconds: float = 5.0
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.refresh = refresh
        self.retry_seconds = retry_seconds
        self._down_until = 0.0
        self._written: dict[int, float] = {}  # id(member) -> the `changed` last written

    def stale(self, pool: Pool, now: float) -> bool:
        return now - pool.synced >= self.refresh and now >= self._down_until

    async def read(self, pool: Pool) -> None:
        """One round trip: the provider's hash, each newer state taken."""
        pool.synced = time.time()
        try:
            fields = await self.client.hgetall(self.prefix + pool.provider)
        except (RedisError, OSError) as exc:
            self._down(exc)
            return
        for name, raw in fields.items():
            label = name.decode() if isinstance(name, bytes) else name
            member = pool.by_label.get(label)
            if member is not None and adopt(member, raw):
                self._written[id(member)] = member.changed

    async def write(self, pool: Pool) -> None:
        """The states changed here since last written, in one HSET."""
        changed = {
            m.label: encode(m) for m in pool.members if m.changed > self._written.get(id(m), 0.0)
        }
        if not changed:
            return
        try:
            await self.client.hset(self.prefix + pool.provider, mapping=changed)  # type: ignore[arg-type]  # redis-py's mapping type is invariant
        except (RedisError, OSError) as exc:
            pool.dirty = True
            self._down(exc)
            return
        for member in pool.members:
            if member.label in changed:
                self._written[id(member)] = member.changed

    def _down(self, exc: BaseException) -> None:
        if self._down_until == 0.0:
            log.warning(
                "pools: Redis unreachable (%s); credential state kept per instance",
                type(exc).__name__,
            )
        self._down_until = time.time() + self.retry_seconds

    async def aclose(self) -> None:
        await self.client.aclose()
