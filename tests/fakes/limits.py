"""A fake provider's per-key rate limit, and the headers that report it.

``fake.limit(rpm=3)`` makes the fake count each window (``window`` seconds,
60 by default, as the providers' per-minute limits) and answer 429 with
``Retry-After`` once the key's requests (or tokens) are spent. Every answer
then carries the provider's rate-limit headers: OpenAI's
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (reset as ``"1s"``,
``"6m0s"``), or Anthropic's ``anthropic-ratelimit-*`` (reset as RFC 3339).
The tokens a request counts are its output limit plus a quarter of its body's
bytes, about what the providers count.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """One request's count: admitted or not, and what the headers say."""

    allowed: bool
    limit: int
    remaining: int
    tokens_limit: int
    tokens_remaining: int
    reset: float  # seconds until the window starts again


class KeyLimit:
    """A fixed window of ``rpm`` requests and ``tpm`` tokens, for one key."""

    def __init__(self, rpm: int, tpm: int = 1_000_000, window: float = 60.0) -> None:
        self.rpm, self.tpm, self.window = rpm, tpm, window
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._requests = 0
        self._tokens = 0

    def take(self, tokens: int) -> Verdict:
        with self._lock:
            now = time.monotonic()
            if now - self._start >= self.window:
                self._start, self._requests, self._tokens = now, 0, 0
            reset = self.window - (now - self._start)
            allowed = self._requests < self.rpm and self._tokens + tokens <= self.tpm
            if allowed:
                self._requests += 1
                self._tokens += tokens
            return Verdict(
                allowed,
                self.rpm,
                self.rpm - self._requests,
                self.tpm,
                max(self.tpm - self._tokens, 0),
                reset,
            )


def request_tokens(body: dict[str, Any], raw: bytes) -> int:
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    output = limit if isinstance(limit, int) else 0
    return output + len(raw) // 4


def openai_headers(v: Verdict) -> dict[str, str]:
    reset = go_duration(v.reset)
    return {
        "x-ratelimit-limit-requests": str(v.limit),
        "x-ratelimit-remaining-requests": str(v.remaining),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": str(v.tokens_limit),
        "x-ratelimit-remaining-tokens": str(v.tokens_remaining),
        "x-ratelimit-reset-tokens": reset,
    }


def anthropic_headers(v: Verdict) -> dict[str, str]:
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=v.reset)
    reset = at.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {
        "anthropic-ratelimit-requests-limit": str(v.limit),
        "anthropic-ratelimit-requests-remaining": str(v.remaining),
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-limit": str(v.tokens_limit),
        "anthropic-ratelimit-tokens-remaining": str(v.tokens_remaining),
        "anthropic-ratelimit-tokens-reset": reset,
    }


def go_duration(seconds: float) -> str:
    """OpenAI's reset format: ``"6m0s"``, ``"1.5s"``, ``"20ms"``."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 1)}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.3g}s" if minutes else f"{rest:.3g}s"
