"""The rate limiter whose counters live in Redis, shared by every gateway instance.

One Lua script does the GCRA arithmetic of `gcra.py` for all the counters of
a request atomically, so one call is one round trip (EVALSHA; EVAL when Redis
does not know the script yet, which also caches it). The script reads Redis's
own clock (`TIME`), so the instances' clocks need not agree. A counter is a
string key `<prefix>{u<user id>}:<k|u><id>:<r|t>` holding its TAT in
microseconds, expiring when its bucket is full again; the hash tag keeps all of a
user's counters in one slot of a Redis Cluster.

When Redis is unreachable (connect error, timeout, any Redis error) the limiter
fails open to a per-instance `LocalRateLimiter` with the same limits, logs it
once, and tries Redis again after `retry_seconds`; see `ai_service.ratelimit` for why.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from ai_service.ratelimit.gcra import GcraLimiter
from ai_service.ratelimit.local import LocalRateLimiter
from ai_service.ratelimit.types import Clock, Counter, Refusal

log = logging.getLogger("ai_service.ratelimit")

# KEYS: the counters. ARGV[1]: now in µs, or "" for Redis's clock; ARGV[2]: "admit"
# (all or nothing) or "adjust" (signed, never refused); ARGV[3..]: one cost in µs a key.
# Returns {0, 0} when admitted, else {index of the counter that waits longest, wait µs}.
SCRIPT: Final = """
local period = 60000000
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local admit = ARGV[2] == 'admit'
local tats = {}
local worst, worst_i = 0, 0
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tat = tat + tonumber(ARGV[i + 2])
  if admit then
    local wait = tat - period - now
    if wait > worst then worst, worst_i = wait, i end
  end
  tats[i] = tat
end
if worst_i > 0 then return {worst_i, worst} end
for i = 1, #KEYS do
  -- a refund may leave a counter at or below now: its bucket is full, drop it
  local ttl = math.ceil((tats[i] - now) / 1000)
  if ttl > 0 then
    redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttl)
  else
    redis.call('DEL', KEYS[i])
  end
end
return {0, 0}
"""
SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()


def connect(url: str, timeout: float) -> Redis:
    """A client that gives up fast: one immediate retry (a stale pooled connection), no backoff."""
    client: Redis = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )
    return client


class RedisRateLimiter(GcraLimiter):
    """GCRA counters in Redis; fails open to per-instance counters while Redis is down."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "ai-service:rl:",
        default_rpm: int | None = None,
        default_tpm: int | None = None,
        retry_seconds: float = 5.0,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` replaces Redis's own clock (tests); `monotonic` times the retry pause."""
        super().__init__(default_rpm, default_tpm)
        self._client = client
        self._prefix = prefix
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._down_until: float | None = None
        self.fallback = LocalRateLimiter(default_rpm, default_tpm)

    @property
    def redis_available(self) -> bool:
        """False while the limiter counts locally after Redis failed."""
        return self._down_until is None

    def key(self, user_id: int, counter: Counter) -> str:
        return f"{self._prefix}{{u{user_id}}}:{counter.slot}"

    async def _consume(
        self, user_id: int, counters: Sequence[Counter], costs: Sequence[int]
    ) -> Refusal | None:
        result = await self._run(user_id, counters, "admit", costs)
        if result is None:
            return self.fallback.consume([c.slot for c in counters], costs)
        index, wait = int(result[0]), int(result[1])
        return Refusal(index - 1, wait) if index else None

    async def _adjust(
        self, user_id: int, counters: Sequence[Counter], deltas: Sequence[int]
    ) -> None:
        if await self._run(user_id, counters, "adjust", deltas) is None:
            self.fallback.adjust([c.slot for c in counters], deltas)

    async def _run(
        self, user_id: int, counters: Sequence[Counter], mode: str, costs: Sequence[int]
    ) -> list[int] | None:
        """The script's answer, or None when Redis is (or was just found) unreachable."""
        if self._down_until is not None and self._monotonic() < self._down_until:
            return None
        now = "" if self._clock is None else str(self._clock())
        args = [*(self.key(user_id, c) for c in counters), now, mode, *map(str, costs)]
        try:
            try:
                result: list[int] = await self._client.evalsha(SCRIPT_SHA, len(counters), *args)
            except NoScriptError:
                result = await self._client.eval(SCRIPT, len(counters), *args)
        except (RedisError, OSError) as exc:
            if self._down_until is None:
                log.warning(
                    "rate limiter: Redis unreachable (%s); counting per instance, "
                    "retrying in %.0fs",
                    type(exc).__name__,
                    self._retry_seconds,
                )
            self._down_until = self._monotonic() + self._retry_seconds
            return None
        if self._down_until is not None:
            log.warning("rate limiter: Redis reachable again; counting in Redis")
            self._down_until = None
        return result

    async def aclose(self) -> None:
        await self._client.aclose()
