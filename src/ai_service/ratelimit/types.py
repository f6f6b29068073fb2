"""The types every limiter shares: stored limits, counters, refusals, the limiter protocol.

A limiter knows a request by its key's and its user's ids (`Caller`), so the
authentication layer's `Principal` satisfies it without this package importing
that layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol

PERIOD_US: Final = 60_000_000
MAX_LIMIT: Final = 2**31 - 1
REQUESTS: Final = "requests"
TOKENS: Final = "tokens"

Clock = Callable[[], int]
"""Microseconds on a clock that every limiter sharing the counters agrees on."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The stored limits of a key and its user; None = not set (see `ai_service.ratelimit`)."""

    key_rpm: int | None = None
    key_tpm: int | None = None
    user_rpm: int | None = None
    user_tpm: int | None = None


NO_LIMITS: Final = Limits()


class Caller(Protocol):
    """Whom a request counts against: its API key and that key's user."""

    @property
    def key_id(self) -> int: ...

    @property
    def user_id(self) -> int: ...


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


class RateLimiter(Protocol):
    """What the request path needs from a limiter."""

    def token_ceiling(self, limits: Limits) -> int | None: ...

    async def admit(self, caller: Caller, limits: Limits, tokens: int) -> None: ...

    async def settle_tokens(
        self, caller: Caller, limits: Limits, reserved_tokens: int, actual_tokens: int
    ) -> None: ...

    async def aclose(self) -> None: ...
