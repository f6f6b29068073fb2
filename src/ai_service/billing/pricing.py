"""Prices and the cost formula, computed once and the same way for every provider.

A `Price` is a model's schedule of rates, in integer micro-USD per 1M tokens
(= pico-USD per token): which `Rates` apply depends on the moment the request
is billed (prices with effective dates, time-of-day rates) and on the service
tier the provider says served it. Each rate may be tiered by prompt length
with the providers' cliff rule: once the prompt (uncached + cache read + cache
write tokens) exceeds a tier's start, that tier's rate applies to all tokens.
The input of a server tool loop is the sum of several samplings' prompts, each
at most the model's context window: it is tiered as at most one window.

The cost of a request is the exact sum of tokens x rate for each kind of token
(uncached input, cache read, 5-minute cache write, 1-hour cache write, output
including reasoning), plus uses x price for each kind of server tool use the
provider bills per use (`UsePrices`: Anthropic's web searches), rounded up to
the nano-USD once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from ai_service.billing.money import PICO_PER_NANO, ceil_div
from ai_service.providers.base import Usage


@dataclass(frozen=True, slots=True)
class Rate:
    """One rate in micro-USD per 1M tokens, with its prompt-length tiers `(start, rate)`."""

    base: int
    tiers: tuple[tuple[int, int], ...] = ()

    def tier(self, prompt_tokens: int) -> int | None:
        """The start of the tier a prompt of this length falls in (None: the base rate)."""
        for start, _ in reversed(self.tiers):
            if prompt_tokens > start:
                return start
        return None

    def at(self, prompt_tokens: int) -> int:
        for start, rate in reversed(self.tiers):
            if prompt_tokens > start:
                return rate
        return self.base

    @property
    def dearest(self) -> int:
        return max([self.base, *(rate for _, rate in self.tiers)])


def flat(value: int) -> Rate:
    return Rate(value)


@dataclass(frozen=True, slots=True)
class Rates:
    """The rates of one price period and service tier (None: the provider has no such rate)."""

    input: Rate
    output: Rate
    cache_read: Rate | None = None
    cache_write: Rate | None = None
    cache_write_1h: Rate | None = None
    # the rate of each kind of token (`KINDS`' order) when no rate is tiered, else None
    _flat: tuple[int, ...] | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not any(rate.tiers for rate in self.kinds()):
            object.__setattr__(self, "_flat", tuple(rate.base for rate in self.kinds()))

    def read(self) -> Rate:
        return self.input if self.cache_read is None else self.cache_read

    def write(self) -> Rate:
        return self.input if self.cache_write is None else self.cache_write

    def write_1h(self) -> Rate:
        """The 1-hour cache-write rate; without one, the dearer of the 5-minute and input rates."""
        if self.cache_write_1h is not None:
            return self.cache_write_1h
        return self.write()

    def kinds(self) -> tuple[Rate, Rate, Rate, Rate, Rate]:
        """The rate of each kind of token, in the order of `KINDS`."""
        return (self.input, self.read(), self.write(), self.write_1h(), self.output)

    def at(self, prompt_tokens: int) -> tuple[int, ...]:
        """The rate of each kind of token (`KINDS`' order) for a prompt of this length."""
        flat = self._flat
        if flat is not None:
            return flat
        return tuple(rate.at(prompt_tokens) for rate in self.kinds())

    def tier(self, prompt_tokens: int) -> int | None:
        """The start of the highest tier a prompt of this length reaches (None: base rates)."""
        if self._flat is not None:
            return None
        tiers = [rate.tier(prompt_tokens) for rate in self.kinds()]
        return max((t for t in tiers if t is not None), default=None)

    def dearest_input(self, prompt_tokens: int) -> int:
        return max(self.at(prompt_tokens)[:4])


# the kinds of token a request is billed for, in the order of `Rates.kinds()`
KINDS = ("input", "cache_read", "cache_write", "cache_write_1h", "output")


@dataclass(frozen=True, slots=True)
class Applied:
    """The rates a request is billed at, and why: price date, time-of-day window, service tier."""

    rates: Rates
    price_date: str | None = None
    window: str | None = None
    service_tier: str | None = None


ANY_TIER = "*"


class Schedule(Protocol):
    """Where a model's rates come from (the price data, or an operator's flat override)."""

    def applied(self, when: dt.datetime | None, service_tier: str | None) -> Applied:
        """The rates a request billed at `when` (None: now) for `service_tier` pays."""
        ...

    def possible(self, now: dt.datetime | None, service_tier: str | None) -> Iterable[Rates]:
        """Every set of rates a request starting `now` (None: now), asking `service_tier`,
        may be billed at. `ANY_TIER` asks for the rates of every service tier.
        """
        ...


@dataclass(frozen=True, slots=True)
class FlatSchedule:
    rates: Rates
    _applied: Applied = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_applied", Applied(self.rates))

    def applied(self, when: dt.datetime | None, service_tier: str | None) -> Applied:  # noqa: ARG002
        return self._applied

    def possible(self, now: dt.datetime | None, service_tier: str | None) -> Iterable[Rates]:  # noqa: ARG002
        return (self.rates,)


@dataclass(frozen=True)
class Price:
    """A model's prices in micro-USD per 1M tokens (= pico-USD per token) and limits.

    `input`, `output`, `cached_input`, `cache_write` and `cache_write_1h` are the
    standard base rates (for display and for a flat price); `schedule`, when set,
    is the full schedule the cost is computed from. `source` names where the
    price comes from; `flagged` marks a price applied to a model the catalog
    does not know (the provider's dearest, under the `dearest` policy).
    """

    input: int
    output: int
    cached_input: int | None = None
    cache_write: int | None = None
    context_window: int = 0
    max_output: int = 4096
    reasoning: bool = False
    cache_write_1h: int | None = None
    schedule: Schedule | None = field(default=None, compare=False)
    source: str = "flat"
    priced_as: str | None = None
    flagged: bool = False
    deprecated: bool = False

    def plan(self) -> Schedule:
        """The schedule the cost is computed from (a flat one for a flat price)."""
        if self.schedule is not None:
            return self.schedule
        return self._flat

    @cached_property
    def _flat(self) -> FlatSchedule:
        return FlatSchedule(self.base_rates())

    def base_rates(self) -> Rates:
        def opt(value: int | None) -> Rate | None:
            return None if value is None else Rate(value)

        return Rates(
            Rate(self.input),
            Rate(self.output),
            opt(self.cached_input),
            opt(self.cache_write),
            opt(self.cache_write_1h),
        )


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# the price of one use of each kind of server tool, in pico-USD (Anthropic's web search:
# $10 per 1,000 searches = 10_000_000_000); a kind without a price costs nothing per use
UsePrices = Mapping[str, int]
NO_USE_PRICES: UsePrices = {}


@dataclass(frozen=True, slots=True)
class Charge:
    """A request's cost, and each part of it, at the rates that applied."""

    cost: int  # nano-USD, rounded up once
    pico: int  # exact pico-USD
    applied: Applied
    tier: int | None
    parts: dict[str, tuple[int, int, int]]  # kind -> (tokens, rate, pico-USD)
    uses: dict[str, tuple[int, int, int]] | None = None  # kind -> (uses, price, pico-USD)

    def detail(self, price: Price) -> dict[str, Any]:
        """The JSON-ready breakdown stored as the request row's `price_detail`."""
        detail: dict[str, Any] = {
            "source": price.source,
            "priced_as": price.priced_as,
            "flagged": price.flagged or None,
            "price_date": self.applied.price_date,
            "time_window": self.applied.window,
            "service_tier": self.applied.service_tier,
            "tier": self.tier,
            "parts": {
                kind: {"tokens": tokens, "rate": rate, "cost_pico": pico}
                for kind, (tokens, rate, pico) in self.parts.items()
                if tokens
            },
            "cost_nano": self.cost,
        }
        if self.uses:  # server tool uses: their count, price (pico-USD a use) and cost
            detail["uses"] = {
                kind: {"uses": uses, "price": each, "cost_pico": pico}
                for kind, (uses, each, pico) in self.uses.items()
            }
        return detail


def charge(
    usage: Usage,
    price: Price,
    when: dt.datetime | None = None,
    use_prices: UsePrices = NO_USE_PRICES,
) -> Charge:
    """The cost of `usage` billed at `when` (now by default), with its breakdown; its server
    tool uses (`Usage.tool_uses`) at `use_prices`."""
    applied = price.plan().applied(when, usage.service_tier)
    rates = applied.rates
    prompt = usage.prompt_tokens
    if usage.tool_uses and price.context_window:
        # a server tool loop's input sums its samplings, each of them at most one context
        # window: it reaches at most the tier of one window, not that of the sum
        prompt = min(prompt, price.context_window)
    one_hour = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    counts = (
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens - one_hour,
        one_hour,
        usage.output_tokens,
    )
    parts: dict[str, tuple[int, int, int]] = {}
    total = 0
    for kind, tokens, value in zip(KINDS, counts, rates.at(prompt), strict=True):
        parts[kind] = (tokens, value, tokens * value)
        total += tokens * value
    uses: dict[str, tuple[int, int, int]] | None = None
    if usage.tool_uses:
        uses = {}
        for kind, count in usage.tool_uses:
            each = use_prices.get(kind, 0)
            uses[kind] = (count, each, count * each)
            total += count * each
    return Charge(ceil_div(total, PICO_PER_NANO), total, applied, rates.tier(prompt), parts, uses)


def cost_pico(usage: Usage, price: Price) -> int:
    """Exact cost in pico-USD of a usage at a price, billed now."""
    return charge(usage, price).pico


def cost(usage: Usage, price: Price) -> int:
    """Cost in nano-USD, rounded up once per request."""
    return charge(usage, price).cost


def worst_case(
    prompt_tokens: int,
    output_tokens: int,
    price: Price,
    service_tier: str | None = None,
    fees: int = 0,
) -> int:
    """Upper bound in nano-USD: every prompt token and the full output at the dearest rates
    the request can be billed at (its prompt's tier, the standard rate or the service tier
    it asks for, any time of day), plus `fees` pico-USD (the most its server tool uses
    can be billed)."""
    pico = 0
    for rates in price.plan().possible(None, service_tier):
        values = rates.at(prompt_tokens)
        pico = max(pico, prompt_tokens * max(values[:4]) + output_tokens * values[4])
    return ceil_div(pico + fees, PICO_PER_NANO)


def affordable_output(
    available: int,
    prompt_tokens: int,
    price: Price,
    service_tier: str | None = None,
    fees: int = 0,
) -> int:
    """The largest output limit whose worst case (with `fees` pico-USD) fits in `available`
    nano-USD; -1 when not even the prompt and the fees fit."""
    best: int | None = None
    for rates in price.plan().possible(None, service_tier):
        values = rates.at(prompt_tokens)
        budget = available * PICO_PER_NANO - prompt_tokens * max(values[:4]) - fees
        if budget < 0:
            return -1
        output = values[4]
        fits = price.max_output if output == 0 else budget // output
        best = fits if best is None else min(best, fits)
    return price.max_output if best is None else best
