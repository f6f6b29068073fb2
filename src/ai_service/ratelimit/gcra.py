"""GCRA, the arithmetic both limiters share: which counters apply, their costs, the 429s.

A limit of L per minute costs 60 s / L a unit; n units are admitted when
`max(TAT, now) + n * 60 s / L - now <= 60 s` (see `ai_service.ratelimit`).
Subclasses store the counters (`LocalRateLimiter` in memory, `RedisRateLimiter`
in Redis).
"""

from __future__ import annotations

from collections.abc import Sequence

from ai_service.errors import RateLimitError
from ai_service.ratelimit.types import (
    PERIOD_US,
    REQUESTS,
    TOKENS,
    Caller,
    Counter,
    Limits,
    Refusal,
)


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

    def counters(self, caller: Caller, limits: Limits) -> list[Counter]:
        """The limits that apply to a request of this key, each with its effective value."""
        found: list[Counter] = []
        if limits.key_rpm:
            found.append(Counter("key", caller.key_id, REQUESTS, limits.key_rpm))
        if limits.key_tpm:
            found.append(Counter("key", caller.key_id, TOKENS, limits.key_tpm))
        user_rpm = _effective(limits.user_rpm, self.default_rpm)
        if user_rpm:
            found.append(Counter("user", caller.user_id, REQUESTS, user_rpm))
        user_tpm = _effective(limits.user_tpm, self.default_tpm)
        if user_tpm:
            found.append(Counter("user", caller.user_id, TOKENS, user_tpm))
        return found

    def token_ceiling(self, limits: Limits) -> int | None:
        """The most tokens one request may count (the smallest TPM limit), None = no limit."""
        values = [v for v in (limits.key_tpm, _effective(limits.user_tpm, self.default_tpm)) if v]
        return min(values) if values else None

    async def admit(self, caller: Caller, limits: Limits, tokens: int) -> None:
        """Count one request of at most `tokens` tokens. Raises `RateLimitError` (429)."""
        found = self.counters(caller, limits)
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
        refusal = await self._consume(caller.user_id, found, costs)
        if refusal is not None:
            raise rate_limited(found[refusal.position], refusal.wait_us)

    async def settle_tokens(
        self, caller: Caller, limits: Limits, reserved_tokens: int, actual_tokens: int
    ) -> None:
        """Correct the tokens counted at admission to the request's actual usage."""
        delta = max(actual_tokens, 0) - max(reserved_tokens, 0)
        if delta == 0:
            return
        found = [c for c in self.counters(caller, limits) if c.unit == TOKENS]
        if not found:
            return
        if delta > 0:
            deltas = [delta * PERIOD_US // c.limit for c in found]
        else:
            deltas = [-(-delta * PERIOD_US // c.limit) for c in found]
        await self._adjust(caller.user_id, found, deltas)

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
