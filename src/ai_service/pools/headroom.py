"""Headroom of one credential: how many requests and tokens it may still send, and when.

Each of the two dimensions is a `Window`: a level that refills continuously
up to its capacity (the credential's configured rpm/tpm, else the limit the
provider reports). The gateway spends a request's token estimate before
sending it; the provider's own headers, read from every answer, then set the
level to what the provider counts (they count every instance's use of the
key, so each instance learns the truth from its own answers):

    OpenAI-shaped   x-ratelimit-{limit,remaining,reset}-{requests,tokens}
                    (reset as a duration: "1s", "6m0s", "20ms")
    Anthropic       anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}
                    (reset as an RFC 3339 time; input-tokens-* stands in for tokens-*)
    any             retry-after, retry-after-ms (on a 429: blocked until then)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

PERIOD = 60.0  # the providers' limits are per minute
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@functools.lru_cache(maxsize=256)  # the same few values come back on every answer
def duration(value: str) -> float | None:
    """Seconds of an OpenAI reset duration (`6m0s`, `1.5s`, `20ms`); None if unreadable."""
    parts = _DURATION.findall(value)
    if not parts:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    return sum(float(n) * _UNITS[unit] for n, unit in parts)


def until(value: str, wall: float) -> float | None:
    """Seconds from `wall` (epoch) to an RFC 3339 time; None if unreadable."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return duration(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - wall)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        try:
            return int(float(value))
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Reading:
    """What one answer's headers say about one dimension."""

    limit: int | None
    remaining: int
    reset: float | None  # seconds until the window is full again


# (limit, remaining, reset) header names of each dimension
Names = tuple[str, str, str]
OPENAI: tuple[Names, Names] = tuple(  # type: ignore[assignment]  # two triples, built once
    tuple(f"x-ratelimit-{part}-{kind}" for part in ("limit", "remaining", "reset"))
    for kind in ("requests", "tokens")
)
ANTHROPIC: dict[str, Names] = {
    kind: tuple(  # type: ignore[misc]  # a triple
        f"anthropic-ratelimit-{kind}-{part}" for part in ("limit", "remaining", "reset")
    )
    for kind in ("requests", "tokens", "input-tokens")
}


def read(headers: Mapping[str, str], wall: float) -> tuple[Reading | None, Reading | None]:
    """The (requests, tokens) readings of an answer's rate-limit headers, where present."""
    get = headers.get
    requests, tokens = OPENAI
    if get(requests[1]) is not None or get(tokens[1]) is not None:
        return _reading(get, requests, duration), _reading(get, tokens, duration)
    requests = ANTHROPIC["requests"]
    tokens = ANTHROPIC["tokens"]
    if get(tokens[1]) is None:
        tokens = ANTHROPIC["input-tokens"]
    if get(requests[1]) is None and get(tokens[1]) is None:
        return None, None

    def reset(value: str) -> float | None:
        return until(value, wall)

    return _reading(get, requests, reset), _reading(get, tokens, reset)


def _reading(
    get: Callable[[str], str | None], names: Names, reset: Callable[[str], float | None]
) -> Reading | None:
    limit, remaining, when = names
    left = _int(get(remaining))
    if left is None:
        return None
    at = get(when)
    return Reading(_int(get(limit)), left, reset(at) if at else None)


class Window:
    """A level refilling at `capacity / PERIOD` a second up to `capacity` (None: unlimited)."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, capacity: int | None, now: float) -> None:
        self.capacity: float | None = capacity
        self.level: float = float(capacity or 0)
        self.rate = (capacity or 0) / PERIOD
        self.stamp = now

    def current(self, now: float) -> float:
        capacity = self.capacity
        if capacity is None:
            return float("inf")
        level = self.level + (now - self.stamp) * self.rate
        return capacity if level > capacity else level

    def room(self, amount: float, now: float) -> float:
        """The share of the capacity left (0..1) if `amount` fits now (see `fits`), else -1."""
        capacity = self.capacity
        if capacity is None:
            return 1.0
        level = self.level + (now - self.stamp) * self.rate
        if level > capacity:
            level = capacity
        if level < (amount if amount < capacity else capacity):
            return -1.0
        return level / capacity if capacity else 0.0

    def fraction(self, now: float) -> float:
        """The share of the capacity left, 0..1 (1 when unlimited)."""
        if self.capacity is None:
            return 1.0
        return max(0.0, self.current(now)) / self.capacity if self.capacity else 0.0

    def fits(self, amount: float, now: float) -> bool:
        """Whether `amount` can be spent now (a request larger than the capacity, when full)."""
        capacity = self.capacity
        if capacity is None:
            return True
        return self.current(now) >= (amount if amount < capacity else capacity)

    def wait(self, amount: float, now: float) -> float:
        """Seconds until `amount` fits."""
        if self.capacity is None or self.rate <= 0:
            return 0.0
        need = min(amount, self.capacity) - self.current(now)
        return max(0.0, need / self.rate)

    def spend(self, amount: float, now: float) -> None:
        if self.capacity is not None:
            self.level = self.current(now) - amount
            self.stamp = now

    def observe(self, reading: Reading, now: float, configured: int | None) -> None:
        """Take the provider's count: its remaining now, refilling by its reset."""
        capacity = configured or reading.limit or self.capacity
        if capacity is None:
            capacity = max(reading.remaining, 1)
        self.capacity = capacity
        self.level = float(reading.remaining)
        if reading.reset and reading.reset > 0 and capacity > reading.remaining:
            self.rate = (capacity - reading.remaining) / reading.reset
        else:
            self.rate = capacity / PERIOD
        self.stamp = now
