"""The limiter whose counters live in this process: the default, and Redis's fallback."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ai_service.ratelimit.gcra import GcraLimiter
from ai_service.ratelimit.types import PERIOD_US, Clock, Counter, Refusal


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


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
