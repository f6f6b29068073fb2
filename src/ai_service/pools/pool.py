"""One provider's pool: choosing a credential per attempt, and learning from its answers.

A request is sent with a credential chosen at random, by weight times the
headroom left (the lesser of its requests' and tokens' shares), among those
that may send it now: enabled, not blocked by a 429, breaker letting it
through, room for one request and the request's token estimate (spent at
once). What each attempt's answer says is taken in `failed` / `succeeded`:

    429                 blocked until its Retry-After (or its reset; 1 s if none)
    401, 402, 403       disabled until an operator enables it again (an alert)
    5xx, timeout, cut   a failure for its breaker
    2xx                 a success for its breaker

`failed` answers whether the failure was the credential's: the request then
moves to another at once, without using a retry of its budget, if another
can send it now (`another`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ai_service.errors import (
    RateLimitError,
    ServiceError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamUnavailableError,
)
from ai_service.pools.breaker import Breaker, State
from ai_service.pools.credentials import Credential
from ai_service.pools.headroom import Window, read
from ai_service.providers.base import Adapter, UpstreamRequest

AUTH_STATUSES = frozenset({401, 402, 403})
DEFAULT_BLOCK = 1.0  # a 429 that says nothing of when to come back blocks this long


@dataclass(eq=False, slots=True)
class Member:
    """One credential of a pool, with its adapter and what is known of its state."""

    credential: Credential
    adapter: Adapter
    requests: Window
    tokens: Window
    breaker: Breaker
    blocked_until: float = 0.0
    disabled: str | None = None  # why it was taken out (None: in service)
    changed: float = 0.0  # wall time of its last state change (newest wins across instances)
    source: str = "settings"  # where it is configured: settings, stored, environment
    counts: dict[str, int] = field(default_factory=dict)  # requests, errors, 429s

    @property
    def label(self) -> str:
        return self.credential.label

    def can_send(self, tokens: int, now: float) -> bool:
        return (
            self.disabled is None
            and self.blocked_until <= now
            and self.breaker.allows(now)
            and self.requests.fits(1, now)
            and self.tokens.fits(tokens, now)
        )

    def room(self, tokens: int, now: float) -> float:
        """Its headroom (0..1) if it may send `tokens` now, else -1."""
        if self.disabled is not None or self.blocked_until > now or not self.breaker.allows(now):
            return -1.0
        requests = self.requests.room(1, now)
        if requests < 0.0:
            return requests
        room = self.tokens.room(tokens, now)
        return room if room < requests else requests

    def headroom(self, now: float) -> float:
        return min(self.requests.fraction(now), self.tokens.fraction(now))

    def ready_in(self, tokens: int, now: float) -> float:
        """Seconds until it may send `tokens` (infinite while disabled)."""
        if self.disabled is not None:
            return float("inf")
        wait = max(self.blocked_until - now, self.requests.wait(1, now))
        wait = max(wait, self.tokens.wait(tokens, now))
        if not self.breaker.allows(now):
            wait = max(wait, self.breaker.reopens_in(now))
        return wait

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


# an event for the operators: (provider, label, kind, detail); kind "disabled" or "enabled"
Notify = Callable[[str, str, str, str], None]


class Pool:
    """The credentials of one provider. The first is the one the provider's plans are built
    with: a request built for it is re-targeted to another (`sending`)."""

    def __init__(
        self,
        provider: str,
        members: list[Member],
        notify: Notify | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.members = members
        self.primary = members[0]
        self.notify = notify
        self.clock = clock
        self.synced = 0.0  # when the shared state was last read (0: never)
        self.dirty = False  # a state change not yet shared
        self.by_label = {m.label: m for m in members}

    def replace(self, members: list[Member]) -> None:
        """Serve with these credentials from now on (requests under way keep theirs)."""
        self.members = members
        self.primary = members[0]
        self.by_label = {m.label: m for m in members}
        self.synced = 0.0

    def choose(self, tokens: int, tried: set[Member]) -> Member | None:
        """A credential that may send `tokens` now, by weight and headroom; untried ones
        first. Spends one request and the tokens of the one chosen. None: none may."""
        now = self.clock()
        able: list[Member] = []
        weights: list[float] = []
        for m in self.members:
            room = m.room(tokens, now)
            if room >= 0.0 and m not in tried:
                able.append(m)
                weights.append(m.credential.weight * (room if room > 0.001 else 0.001))
        if not able and tried:
            return self.choose(tokens, set())
        if not able:
            return None
        chosen = able[0]
        if len(able) > 1:
            point = random.random() * sum(weights)  # noqa: S311  # spreading load, not crypto
            for m, weight in zip(able, weights, strict=True):
                chosen = m
                point -= weight
                if point < 0:
                    break
        chosen.breaker.take(now)
        chosen.requests.spend(1, now)
        chosen.tokens.spend(tokens, now)
        chosen.count("requests")
        return chosen

    def refusal(self, tokens: int) -> ServiceError:
        """The error when no credential may send: 429 with the earliest Retry-After while any
        is only out of headroom, 503 while every one is disabled or its breaker open."""
        now = self.clock()
        waits = [(m.ready_in(tokens, now), m) for m in self.members]
        wait, member = min(waits, key=lambda pair: pair[0])
        if wait == float("inf"):
            return UpstreamUnavailableError(
                f"Every credential of the {self.provider} provider is disabled; "
                "contact the gateway operator."
            )
        if not member.breaker.allows(now) and member.blocked_until <= now:
            return UpstreamUnavailableError(
                f"Every credential of the {self.provider} provider is failing; retry later.",
                retry_after=wait,
                retryable=True,
            )
        return RateLimitError(
            f"Every credential of the {self.provider} provider is rate limited; retry later.",
            retry_after=wait,
            retryable=True,
        )

    def sending(self, member: Member, request: UpstreamRequest | None) -> UpstreamRequest | None:
        """`request` (built with the first credential) as sent with `member`'s."""
        if request is None or member is self.primary:
            return request
        return retarget(request, self.primary.credential, member.credential)

    def observe(self, member: Member, headers: Mapping[str, str]) -> None:
        """Take the provider's rate-limit headers of an answer sent with `member`."""
        now = self.clock()
        requests, tokens = read(headers, now)
        if requests is not None:
            member.requests.observe(requests, now, member.credential.rpm)
        if tokens is not None:
            member.tokens.observe(tokens, now, member.credential.tpm)

    def succeeded(self, member: Member) -> None:
        member.breaker.success()
        self._changed(member)

    def failed(self, member: Member, exc: ServiceError, tokens: int) -> bool:
        """Take an attempt's failure; whether it was the credential's (not the request's)."""
        now = self.clock()
        status = exc.upstream_status
        if isinstance(exc, RateLimitError) and status == 429:
            member.count("rate_limited")
            wait = exc.retry_after
            if wait is None:
                wait = max(member.requests.wait(1, now), member.tokens.wait(tokens, now))
            member.blocked_until = now + (wait or DEFAULT_BLOCK)
            member.changed = now
            self.dirty = True
        elif status in AUTH_STATUSES:
            member.count("errors")
            self.disable(member, f"the provider answered HTTP {status}")
        elif isinstance(exc, UpstreamError) and not isinstance(exc, UpstreamStatusError):
            member.count("errors")
            member.breaker.failure(now)
            self._changed(member)
        else:
            return False  # the request's own fault: another credential would fail it too
        return True

    def another(self, member: Member, tokens: int) -> bool:
        """Whether a credential other than `member` may send `tokens` now."""
        now = self.clock()
        return any(m is not member and m.can_send(tokens, now) for m in self.members)

    def disable(self, member: Member, reason: str) -> None:
        if member.disabled is None:
            member.disabled = reason
            member.changed = self.clock()
            self.dirty = True
            if self.notify is not None:
                self.notify(self.provider, member.label, "disabled", reason)

    def enable(self, member: Member) -> None:
        """Put a credential back in service (an operator's act): its breaker closed, unblocked."""
        member.disabled = None
        member.blocked_until = 0.0
        member.breaker.adopt(State.CLOSED, 0.0)
        member.changed = self.clock()
        self.dirty = True
        if self.notify is not None:
            self.notify(self.provider, member.label, "enabled", "enabled by an operator")

    def _changed(self, member: Member) -> None:
        if member.breaker.changed:
            member.breaker.changed = False
            member.changed = self.clock()
            self.dirty = True


def retarget(request: UpstreamRequest, built: Credential, sent: Credential) -> UpstreamRequest:
    """A request built with one credential's key and base URL, with another's instead."""
    url = request.url
    base = built.base_url.rstrip("/")
    if url.startswith(base):
        url = sent.base_url.rstrip("/") + url[len(base) :]
    old, new = built.key, sent.key
    headers = {k: v.replace(old, new) if old in v else v for k, v in request.headers.items()}
    return UpstreamRequest(
        url, headers, request.body, request.choices, request.hidden_tokens, request.method
    )
