"""Prices and the cost formula, computed once and the same way for every provider."""

from __future__ import annotations

from dataclasses import dataclass

from ai_service.billing.money import PICO_PER_NANO, ceil_div
from ai_service.providers.base import Usage


@dataclass(frozen=True, slots=True)
class Price:
    """A model's prices in micro-USD per 1M tokens (= pico-USD per token) and limits."""

    input: int
    output: int
    cached_input: int | None = None
    cache_write: int | None = None
    context_window: int = 0
    max_output: int = 4096
    reasoning: bool = False

    @property
    def cache_read_rate(self) -> int:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def cache_write_rate(self) -> int:
        return self.input if self.cache_write is None else self.cache_write


def cost_pico(usage: Usage, price: Price) -> int:
    """Exact cost in pico-USD of a usage at a price."""
    return (
        usage.input_tokens * price.input
        + usage.cache_read_tokens * price.cache_read_rate
        + usage.cache_write_tokens * price.cache_write_rate
        + usage.output_tokens * price.output
    )


def cost(usage: Usage, price: Price) -> int:
    """Cost in nano-USD, rounded up once per request."""
    return ceil_div(cost_pico(usage, price), PICO_PER_NANO)


def worst_case(prompt_tokens: int, output_tokens: int, price: Price) -> int:
    """Upper bound in nano-USD: every prompt token at the dearest input rate, full output."""
    input_rate = max(price.input, price.cache_read_rate, price.cache_write_rate)
    pico = prompt_tokens * input_rate + output_tokens * price.output
    return ceil_div(pico, PICO_PER_NANO)


def affordable_output(available: int, prompt_tokens: int, price: Price) -> int:
    """The largest output limit whose worst case fits in `available` nano-USD."""
    input_rate = max(price.input, price.cache_read_rate, price.cache_write_rate)
    budget = available * PICO_PER_NANO - prompt_tokens * input_rate
    if budget < 0:
        return -1
    if price.output == 0:
        return price.max_output
    return budget // price.output
