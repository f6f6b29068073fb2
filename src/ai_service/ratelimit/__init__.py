"""Rate limits per key and per user: requests and tokens per minute, set by the operator.

    types.py   `Limits` (a key's and its user's stored limits), `Caller` (the ids a
               request counts against), the `RateLimiter` protocol the request path
               calls (`admit()` before the upstream call, `settle_tokens()` after it)
    gcra.py    the arithmetic and the 429s both limiters share
    local.py   `LocalRateLimiter`: counters in this process, the default
    redis.py   `RedisRateLimiter`: counters shared by every instance through Redis

`build_limiter()` picks one from the settings. The operator's `set_limits()` /
`get_limits()` live in `ai_service.services.limits`.

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
from typing import TYPE_CHECKING

from ai_service.ratelimit.gcra import GcraLimiter, rate_limited, too_large
from ai_service.ratelimit.local import LocalRateLimiter, monotonic_us
from ai_service.ratelimit.types import (
    MAX_LIMIT,
    NO_LIMITS,
    PERIOD_US,
    REQUESTS,
    TOKENS,
    Caller,
    Clock,
    Counter,
    Limits,
    RateLimiter,
    Refusal,
)

if TYPE_CHECKING:
    from ai_service.config import Settings

__all__ = [
    "MAX_LIMIT",
    "NO_LIMITS",
    "PERIOD_US",
    "REQUESTS",
    "TOKENS",
    "Caller",
    "Clock",
    "Counter",
    "GcraLimiter",
    "Limits",
    "LocalRateLimiter",
    "RateLimiter",
    "Refusal",
    "build_limiter",
    "monotonic_us",
    "rate_limited",
    "too_large",
]

log = logging.getLogger("ai_service.ratelimit")


def build_limiter(settings: Settings) -> RateLimiter:
    """The limiter these settings ask for: Redis when `redis_url` is set, else in-process."""
    if settings.redis_url is None:
        if settings.workers > 1 and (settings.default_rpm or settings.default_tpm):
            log.warning(
                "rate limits are counted per worker process: set AI_SERVICE_REDIS_URL "
                "to share them across workers and instances"
            )
        return LocalRateLimiter(settings.default_rpm, settings.default_tpm)
    from ai_service.ratelimit.redis import RedisRateLimiter, connect

    return RedisRateLimiter(
        connect(settings.redis_url.get_secret_value(), settings.rate_limit_redis_timeout),
        prefix=settings.rate_limit_prefix,
        default_rpm=settings.default_rpm,
        default_tpm=settings.default_tpm,
        retry_seconds=settings.rate_limit_redis_retry_seconds,
    )
