"""Fallback chains: which upstreams may serve a request, in order, and within what
output limit (`Plan`). The attempts themselves are `services.attempts`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ai_service.allowlist import AllowList
from ai_service.billing.catalog import Catalog, Resolved
from ai_service.billing.estimate import prompt_bound
from ai_service.billing.images import find_images
from ai_service.billing.pricing import affordable_output, worst_case
from ai_service.config import Settings
from ai_service.errors import ServiceError
from ai_service.providers.base import (
    Adapter,
    ChatRequest,
    JsonObject,
    UpstreamRequest,
)
from ai_service.state import AppState

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
