"""The retry loop: each target of a request's plan tried how often, with which credential.

Retries (exponential backoff with full jitter, honouring `Retry-After`) happen
only on retryable failures (connect errors, 429, 5xx, 529) and only before any
byte reached the client; when a model's retries are spent, the next model of
its fallback chain is tried. The client's own mistakes (an upstream 4xx) end
the request at once. Every attempt is recorded for the request's log row.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ai_service.config import Settings
from ai_service.errors import ServiceError, UpstreamStatusError, UpstreamUnavailableError
from ai_service.pools import Member, Pool
from ai_service.providers.base import Adapter, ChatRequest, ChatResult, JsonObject, UpstreamRequest
from ai_service.services.routing import Plan, Target
from ai_service.state import AppState
from ai_service.upstream import UpstreamStream

T = TypeVar("T")


@dataclass(slots=True)
class Attempts:
    """What was tried, in order, for the log row; the pool credential that served, if any."""

    lines: list[str] = field(default_factory=list)
    credential: str | None = None

    def record(self, target: Target, outcome: str, credential: str | None = None) -> None:
        via = f" [{credential}]" if credential is not None else ""
        self.lines.append(f"{target.label}{via} -> {outcome}")

    def __len__(self) -> int:
        return len(self.lines)

    def text(self) -> str | None:
        return "\n".join(self.lines) if self.lines else None


def backoff(settings: Settings, attempt: int, retry_after: float | None) -> float:
    delay = random.uniform(0, min(settings.retry_max_delay, settings.retry_base_delay * 2**attempt))  # noqa: S311  # jitter, not crypto
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


# one attempt at one target: (its adapter, the target, the request built for the plan's
# limit or None, the output limit to send) -> the upstream's answer
Attempt = Callable[[Adapter, Target, UpstreamRequest | None, int], Awaitable[T]]


def chat_attempt(
    state: AppState, body: JsonObject, stream: bool
) -> Attempt[ChatResult | UpstreamStream]:
    """One attempt of a chat completion: a JSON answer, or a stream once its status is in."""

    async def attempt(
        adapter: Adapter, target: Target, prepared: UpstreamRequest | None, limit: int
    ) -> ChatResult | UpstreamStream:
        req = ChatRequest(body, target.resolved.model, stream, limit)
        if stream:
            return await state.upstream.open_stream(adapter, req, prepared)
        return await state.upstream.complete(adapter, req, prepared)

    return attempt


async def attempt_chain(
    state: AppState, plan: Plan, attempts: Attempts, attempt: Attempt[T]
) -> tuple[Target, T]:
    """Try the chain until one target answers. Raises the last `ServiceError`.

    A target is tried up to `retry_attempts` more times on a retryable failure
    within the retry budget, then the next target; any other failure ends the
    request. On a pooled provider each attempt is sent with a credential of
    its pool (`ai_service.pools`).
    """
    deadline = time.monotonic() + state.settings.retry_budget_seconds
    last: ServiceError | None = None
    for index, target in enumerate(plan.chain):
        if target.provider not in state.adapters:
            last = UpstreamUnavailableError(f"The {target.provider} provider is not configured.")
            attempts.record(target, "not configured")
            continue
        tries = Tries(state, plan, index, attempts, deadline)
        pool = state.pools.get(target.provider)
        try:
            if pool is None:
                return target, await tries.direct(attempt)
            return target, await tries.pooled(pool, attempt)
        except ServiceError as exc:
            if not exc.retryable:
                raise
            last = exc
    assert last is not None
    raise last


class Tries:
    """The attempts at one target of the chain; each method raises the last failure."""

    __slots__ = (
        "adapter",
        "attempts",
        "builder",
        "deadline",
        "limit",
        "prepared",
        "settings",
        "state",
        "target",
        "tokens",
    )

    def __init__(
        self, state: AppState, plan: Plan, index: int, attempts: Attempts, deadline: float
    ) -> None:
        self.settings = state.settings
        self.target = target = plan.chain[index]
        self.adapter = state.adapters[target.provider]
        self.prepared = plan.prepared(index, target)
        self.builder = plan.bounds[index].adapter if index < len(plan.bounds) else None
        self.limit = plan.limit_for(target)
        self.attempts = attempts
        self.deadline = deadline
        self.state = state
        self.tokens = plan.tokens(index, self.limit)

    async def wait(self, number: int, retry_after: float | None) -> bool:
        """Sleep before retry `number` (from 0); False when no retry is left in the budget."""
        if number >= self.settings.retry_attempts:
            return False
        delay = backoff(self.settings, number, retry_after)
        if time.monotonic() + delay > self.deadline:
            return False
        await asyncio.sleep(delay)
        return True

    async def direct(self, attempt: Attempt[T]) -> T:
        target = self.target
        number = 0
        while True:
            try:
                result = await attempt(self.adapter, target, self.prepared, self.limit)
            except ServiceError as exc:
                self.attempts.record(target, f"{exc.status} {exc.message}")
                if isinstance(exc, UpstreamStatusError) or not exc.retryable:
                    raise
                if not await self.wait(number, exc.retry_after):
                    raise
                number += 1
                continue
            self.attempts.record(target, "ok")
            return result

    async def pooled(self, pool: Pool, attempt: Attempt[T]) -> T:
        """Each attempt with a credential of `pool`: a failure that is the credential's
        moves the request to another at once, without using a retry, while another can
        send it; when none can, the earliest any can is waited for within the budget."""
        target, pools, tokens = self.target, self.state.pools, self.tokens
        prepared = self.prepared
        if self.builder is not pool.primary.adapter:
            prepared = None  # built before the pool changed: each attempt builds its own
        number = moves = 0
        tried: set[Member] = set()
        while True:
            if pools.shared is not None:
                await pools.fresh(pool)
            member = pool.choose(tokens, tried)
            if member is None:
                refusal = pool.refusal(tokens)
                if not refusal.retryable or not await self.wait(number, refusal.retry_after):
                    self.attempts.record(target, f"{refusal.status} {refusal.message}")
                    raise refusal
                number += 1
                continue
            try:
                result = await attempt(
                    member.adapter, target, pool.sending(member, prepared), self.limit
                )
            except ServiceError as exc:
                self.attempts.record(target, f"{exc.status} {exc.message}", member.label)
                theirs = pool.failed(member, exc, tokens)
                pools.publish(pool)
                if theirs and moves < len(pool.members) and pool.another(member, tokens):
                    tried.add(member)
                    moves += 1
                    continue
                if isinstance(exc, UpstreamStatusError) or not exc.retryable:
                    raise
                if theirs and exc.upstream_status == 429:
                    continue  # the pool's refusal says when the first credential is free
                if not await self.wait(number, exc.retry_after):
                    raise
                number += 1
                continue
            pool.succeeded(member)
            pools.publish(pool)
            self.attempts.record(target, "ok", member.label)
            self.attempts.credential = member.label
            return result
