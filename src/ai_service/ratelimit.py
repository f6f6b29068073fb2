"""Rate limits per key and per user: requests and tokens per minute, set by the operator.

Owns `Limits` (a key's and its user's stored limits), the `RateLimiter` protocol
the request path calls (`admit()` before the upstream call, `settle_tokens()`
after it), `LocalRateLimiter` (counters in this process, the default),
`build_limiter()` (Redis when configured: `ratelimit_redis.py`), and the
operator's `set_limits()` / `get_limits()`.

Which limits apply: a user's `rpm_limit`/`tpm_limit` where set, else
`Settings.default_rpm`/`default_tpm` (None = unlimited); a key's own limits
where set (NULL = none beyond its user's); 0 = unlimited at either level, so an
operator can exempt a user from the defaults. A request must pass every limit
that applies (up to four counters) and consumes all of them or none.

Algorithm: GCRA, a token bucket storing one number per counter, its theoretical
arrival time (TAT) in integer microseconds. A limit of L per minute costs 60 s / L
a unit; n units are admitted when `max(TAT, now) + n * 60 s / L - now <= 60 s`:
a minute's allowance may be spent at once, it refills continuously, and
`Retry-After` is the exact time until the request fits (rounded up). A counter
is dropped once its TAT has passed. A changed limit applies to the next request;
what was used stays used as its share of the minute.

Tokens are admitted with the request's upper bound (prompt bound plus output
limit); `settle_tokens()` refunds the difference to the actual usage, or charges
an excess without refusing anything. A request larger than a TPM limit can never
fit and is refused at once ("request too large", 429 without `Retry-After`);
`token_ceiling()` lets the caller lower the output limit first. Counters of a
request whose settlement never ran correct themselves within a minute.

Redis unreachable (connect error, timeout, any Redis error): fail open to a
per-instance limiter with the same limits, so limits still hold per instance
(N instances admit at most N times a limit) and the gateway keeps serving; Redis
is tried again after `rate_limit_redis_retry_seconds`. Rate limits protect
fairness and upstream quotas, not money (the balance is reserved in the
database), so a Redis outage must not become a gateway outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol

from ai_service.errors import RateLimitError

if TYPE_CHECKING:
    from ai_service.auth import Principal
    from ai_service.config import Settings

log = logging.getLogger("ai_service.ratelimit")

PERIOD_US: Final = 60_000_000
MAX_LIMIT: Final = 2**31 - 1
REQUESTS: Final = "requests"
TOKENS: Final = "tokens"

Clock = Callable[[], int]
"""Microseconds on a clock that every limiter sharing the counters agrees on."""


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


@dataclass(frozen=True, slots=True)
class Limits:
    """The stored limits of a key and its user; None = not set (see the module docstring)."""

    key_rpm: int | None = None
    key_tpm: int | None = None
    user_rpm: int | None = None
    user_tpm: int | None = None


NO_LIMITS: Final = Limits()


class Counter(NamedTuple):
    """One limit that applies to a request."""

    scope: str  # "key" or "user"
    ident: int
    unit: str  # REQUESTS or TOKENS
    limit: int

    @property
    def slot(self) -> str:
        return f"{self.scope[0]}{self.ident}:{self.unit[0]}"


class Refusal(NamedTuple):
    """The counter (position among the request's counters) that refused, and the wait in µs."""

    position: int
    wait_us: int


def _effective(value: int | None, default: int | None) -> int | None:
    if value is None:
        value = default
    return value or None


class GcraLimiter:
    """The shared part of both limiters: which counters apply, costs, errors.

    Subclasses store the counters: `_consume` admits all costs or none,
    `_adjust` adds signed costs without refusing.
    """

    def __init__(self, default_rpm: int | None = None, default_tpm: int | None = None) -> None:
        self.default_rpm = default_rpm
        self.default_tpm = default_tpm

    def counters(self, principal: Principal, limits: Limits) -> list[Counter]:
        """The limits that apply to a request of this key, each with its effective value."""
        found: list[Counter] = []
        if limits.key_rpm:
            found.append(Counter("key", principal.key_id, REQUESTS, limits.key_rpm))
        if limits.key_tpm:
            found.append(Counter("key", principal.key_id, TOKENS, limits.key_tpm))
        user_rpm = _effective(limits.user_rpm, self.default_rpm)
        if user_rpm:
            found.append(Counter("user", principal.user_id, REQUESTS, user_rpm))
        user_tpm = _effective(limits.user_tpm, self.default_tpm)
        if user_tpm:
            found.append(Counter("user", principal.user_id, TOKENS, user_tpm))
        return found

    def token_ceiling(self, limits: Limits) -> int | None:
        """The most tokens one request may count (the smallest TPM limit), None = no limit."""
        values = [v for v in (limits.key_tpm, _effective(limits.user_tpm, self.default_tpm)) if v]
        return min(values) if values else None

    async def admit(self, principal: Principal, limits: Limits, tokens: int) -> None:
        """Count one request of at most `tokens` tokens. Raises `RateLimitError` (429)."""
        found = self.counters(principal, limits)
        if not found:
            return
        tokens = max(tokens, 0)
        costs: list[int] = []
        for counter in found:
            if counter.unit == REQUESTS:
                costs.append(PERIOD_US // counter.limit)
            elif tokens > counter.limit:
                raise too_large(counter, tokens)
            else:
                costs.append(tokens * PERIOD_US // counter.limit)
        refusal = await self._consume(principal.user_id, found, costs)
        if refusal is not None:
            raise rate_limited(found[refusal.position], refusal.wait_us)

    async def settle_tokens(
        self, principal: Principal, limits: Limits, reserved_tokens: int, actual_tokens: int
    ) -> None:
        """Correct the tokens counted at admission to the request's actual usage."""
        delta = max(actual_tokens, 0) - max(reserved_tokens, 0)
        if delta == 0:
            return
        found = [c for c in self.counters(principal, limits) if c.unit == TOKENS]
        if not found:
            return
        if delta > 0:
            deltas = [delta * PERIOD_US // c.limit for c in found]
        else:
            deltas = [-(-delta * PERIOD_US // c.limit) for c in found]
        await self._adjust(principal.user_id, found, deltas)

    async def _consume(
        self, user_id: int, counters: Sequence[Counter], costs: Sequence[int]
    ) -> Refusal | None:
        raise NotImplementedError

    async def _adjust(
        self, user_id: int, counters: Sequence[Counter], deltas: Sequence[int]
    ) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release what the limiter holds (connections)."""


class RateLimiter(Protocol):
    """What the request path needs from a limiter."""

    def token_ceiling(self, limits: Limits) -> int | None: ...

    async def admit(self, principal: Principal, limits: Limits, tokens: int) -> None: ...

    async def settle_tokens(
        self, principal: Principal, limits: Limits, reserved_tokens: int, actual_tokens: int
    ) -> None: ...

    async def aclose(self) -> None: ...


class LocalRateLimiter(GcraLimiter):
    """Counters in this process's memory; one event loop makes each call atomic."""

    def __init__(
        self,
        default_rpm: int | None = None,
        default_tpm: int | None = None,
        *,
        clock: Clock = monotonic_us,
    ) -> None:
        super().__init__(default_rpm, default_tpm)
        self._clock = clock
        self._tats: dict[str, int] = {}
        self._sweep_at = 1024

    def __len__(self) -> int:
        """How many counters are held (expired ones are dropped as the table grows)."""
        return len(self._tats)

    def consume(self, slots: Sequence[str], costs: Sequence[int]) -> Refusal | None:
        """Add every cost or none; the refusal names the counter that must wait longest."""
        now = self._clock()
        tats = self._tats
        new: list[int] = []
        refusal: Refusal | None = None
        for i, (slot, cost) in enumerate(zip(slots, costs, strict=True)):
            tat = max(tats.get(slot, now), now) + cost
            wait = tat - PERIOD_US - now
            if wait > 0 and (refusal is None or wait > refusal.wait_us):
                refusal = Refusal(i, wait)
            new.append(tat)
        if refusal is not None:
            return refusal
        tats.update(zip(slots, new, strict=True))
        if len(tats) > self._sweep_at:
            self.sweep(now)
        return None

    def adjust(self, slots: Sequence[str], deltas: Sequence[int]) -> None:
        """Add signed costs; a counter never holds less than an empty bucket."""
        now = self._clock()
        for slot, delta in zip(slots, deltas, strict=True):
            tat = max(self._tats.get(slot, now), now) + delta
            if tat > now:
                self._tats[slot] = tat
            else:
                self._tats.pop(slot, None)

    def sweep(self, now: int | None = None) -> None:
        """Drop the counters whose bucket is full again."""
        now = self._clock() if now is None else now
        self._tats = {slot: tat for slot, tat in self._tats.items() if tat > now}
        self._sweep_at = max(1024, 2 * len(self._tats))

    async def _consume(
        self, _user_id: int, counters: Sequence[Counter], costs: Sequence[int]
    ) -> Refusal | None:
        return self.consume([c.slot for c in counters], costs)

    async def _adjust(
        self, _user_id: int, counters: Sequence[Counter], deltas: Sequence[int]
    ) -> None:
        self.adjust([c.slot for c in counters], deltas)


def _where(counter: Counter) -> str:
    return "this API key" if counter.scope == "key" else "this account"


def _duration(wait_us: int) -> str:
    if wait_us < 1_000_000:
        return f"{-(-wait_us // 1000)}ms"
    return f"{-(-wait_us // 100_000) / 10:.1f}s"


def rate_limited(counter: Counter, wait_us: int) -> RateLimitError:
    """The 429 for a counter that is full; `retry_after` is the wait rounded up to seconds."""
    unit = "RPM" if counter.unit == REQUESTS else "TPM"
    return RateLimitError(
        f"Rate limit reached for {counter.unit} per minute ({unit}) on {_where(counter)}: "
        f"limit {counter.limit}. Please try again in {_duration(wait_us)}.",
        retry_after=float(-(-wait_us // 1_000_000)),
    )


def too_large(counter: Counter, tokens: int) -> RateLimitError:
    """The 429 for a request that exceeds a tokens-per-minute limit on its own."""
    return RateLimitError(
        f"Request too large for the tokens per minute (TPM) limit on {_where(counter)}: "
        f"limit {counter.limit}, requested up to {tokens} (prompt plus max_tokens). "
        "Send a shorter prompt or a lower max_tokens.",
        param="max_tokens",
    )


def build_limiter(settings: Settings) -> RateLimiter:
    """The limiter these settings ask for: Redis when `redis_url` is set, else in-process."""
    if settings.redis_url is None:
        if settings.workers > 1 and (settings.default_rpm or settings.default_tpm):
            log.warning(
                "rate limits are counted per worker process: set AI_SERVICE_REDIS_URL "
                "to share them across workers and instances"
            )
        return LocalRateLimiter(settings.default_rpm, settings.default_tpm)
    from ai_service.ratelimit_redis import RedisRateLimiter, connect

    return RedisRateLimiter(
        connect(settings.redis_url.get_secret_value(), settings.rate_limit_redis_timeout),
        prefix=settings.rate_limit_prefix,
        default_rpm=settings.default_rpm,
        default_tpm=settings.default_tpm,
        retry_seconds=settings.rate_limit_redis_retry_seconds,
    )
