"""Fallback chains and the retry loop: which upstream serves a request, tried how often.

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

from ai_service.allowlist import AllowList
from ai_service.billing.catalog import Catalog, Resolved
from ai_service.billing.estimate import prompt_bound
from ai_service.billing.images import find_images
from ai_service.billing.pricing import affordable_output, worst_case
from ai_service.config import Settings
from ai_service.errors import ServiceError, UpstreamStatusError, UpstreamUnavailableError
from ai_service.pools import Member, Pool
from ai_service.providers.base import (
    Adapter,
    ChatRequest,
    ChatResult,
    JsonObject,
    UpstreamRequest,
)
from ai_service.state import AppState
from ai_service.upstream import UpstreamStream

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Target:
    """One model of a chain, on one provider."""

    provider: str
    resolved: Resolved

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.resolved.model}"


def parse_target(spec: str, default_provider: str) -> tuple[str, str]:
    provider, sep, model = spec.partition(":")
    if not sep or "/" in provider:
        return default_provider, spec
    return provider, model


def chain_for(
    settings: Settings, catalog: Catalog, first: Target, allowed: AllowList | None
) -> list[Target]:
    """The first target followed by its configured fallbacks (each once), less those the
    key's allow-list does not name (`allowed`; the first target is checked before)."""
    chain = [first]
    seen = {first.label}
    fallbacks = settings.fallbacks.get(first.label) or settings.fallbacks.get(
        first.resolved.requested, []
    )
    for spec in fallbacks:
        provider, model = parse_target(spec, first.provider)
        target = Target(provider, catalog.resolve(provider, model))
        if allowed is not None and not allowed.permits(provider, model, target.resolved.model):
            continue
        if target.label not in seen:
            chain.append(target)
            seen.add(target.label)
    return chain


@dataclass(slots=True)
class Bound:
    """What one target of the chain is sent and may bill at most.

    `request` is the body built for the plan's first output limit (reused
    when that limit is the one sent); `prompt_tokens` bounds its prompt and
    `choices` multiplies the output limit; `fees` is the most its server
    tool uses can be billed per use, in pico-USD. A target that cannot be
    sent (its provider is not configured, or the body does not translate for
    it) bills nothing: its bound is zero.
    """

    prompt_tokens: int = 0
    choices: int = 0
    request: UpstreamRequest | None = None
    limit: int = 0
    fees: int = 0
    adapter: Adapter | None = None  # the adapter that built `request` (its credential's)


@dataclass(slots=True)
class Plan:
    """The output limit and the worst case to reserve for a chain."""

    chain: list[Target]
    client_limit: int | None
    bounds: list[Bound] = field(default_factory=list)
    limit: int = 0
    service_tier: str | None = None  # the tier the client asks for (it may be billed at)

    @property
    def prompt_tokens(self) -> int:
        """The largest prompt bound of the chain."""
        return max((b.prompt_tokens for b in self.bounds), default=0)

    @property
    def choices(self) -> int:
        """The most answers a target of the chain generates."""
        return max((b.choices for b in self.bounds), default=1) or 1

    def limit_for(self, target: Target) -> int:
        if self.client_limit is not None:
            return self.limit
        return min(self.limit, target.resolved.price.max_output)

    def worst_case(self) -> int:
        """The dearest model of the chain sets the reservation: each answer at the full limit."""
        return max(
            worst_case(
                b.prompt_tokens,
                self.limit_for(t) * b.choices,
                t.resolved.price,
                self.service_tier,
                b.fees,
            )
            for t, b in zip(self.chain, self.bounds, strict=True)
        )

    def affordable(self, balance: int) -> int:
        """The largest output limit (per answer) whose worst case `balance` pays for."""
        return min(
            (
                affordable_output(
                    balance, b.prompt_tokens, t.resolved.price, self.service_tier, b.fees
                )
                // b.choices
                for t, b in zip(self.chain, self.bounds, strict=True)
                if b.choices  # a target that cannot be sent bills nothing
            ),
            default=-1,
        )

    def tokens(self, index: int, limit: int) -> int:
        """The tokens target `index` may use at most: what a provider's limit counts."""
        bound = self.bounds[index] if index < len(self.bounds) else None
        if bound is None:
            return limit
        return bound.prompt_tokens + limit * max(bound.choices, 1)

    def prepared(self, index: int, target: Target) -> UpstreamRequest | None:
        """The request built for the bound, if it was built for the limit now sent."""
        bound = self.bounds[index] if index < len(self.bounds) else None
        if bound is None or bound.request is None or bound.limit != self.limit_for(target):
            return None
        return bound.request


# builds one target's request for an output limit; raises `ServiceError` for a body that
# does not translate for it
Build = Callable[[Adapter, Target, int], UpstreamRequest]


def plan_for(
    state: AppState, chain: list[Target], body: JsonObject, stream: bool, client_limit: int | None
) -> Plan:
    """The plan of a chat completion: each target's request built by its adapter."""

    def build(adapter: Adapter, target: Target, limit: int) -> UpstreamRequest:
        return adapter.build_request(ChatRequest(body, target.resolved.model, stream, limit))

    messages = body.get("messages")
    count = len(messages) if isinstance(messages, list) else 0
    return plan_chain(state, chain, body, client_limit, count, build)


def plan_chain(
    state: AppState,
    chain: list[Target],
    body: JsonObject,
    client_limit: int | None,
    messages: int,
    build: Build,
    unseen: int = 0,
) -> Plan:
    """Build every target's request once and bound what each may bill.

    `messages` counts the body's messages (or input items) and `unseen` the
    prompt tokens the provider bills beyond the body. Raises the first
    target's `ServiceError` (400 for a body that does not translate); a
    fallback that cannot be built bounds nothing, since sending it would fail
    the same way before anything is billed.
    """
    settings = state.settings
    tier = body.get("service_tier")
    plan = Plan(chain, client_limit, service_tier=tier if isinstance(tier, str) else None)
    plan.limit = client_limit or chain[0].resolved.price.max_output
    images = find_images(body)
    for index, target in enumerate(chain):
        adapter = state.adapters.get(target.provider)
        if adapter is None:
            plan.bounds.append(Bound())
            continue
        limit = plan.limit_for(target)
        try:
            request = build(adapter, target, limit)
        except ServiceError:
            if index == 0:
                raise
            plan.bounds.append(Bound())
            continue
        tokens = prompt_bound(
            request,
            images,
            provider=target.provider,
            model=target.resolved.model,
            messages=messages,
            message_allowance=settings.message_token_allowance,
            image_allowance=settings.image_token_allowance,
        )
        plan.bounds.append(Bound(tokens + unseen, request.choices, request, limit, 0, adapter))
    return plan


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
