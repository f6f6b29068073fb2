"""The price data: genai-prices' providers turned into exact integer schedules.

The source is Pydantic's genai-prices data (the snapshot bundled with the
package, or a newer `data.json` loaded into `api_price_data` by `ai-service
models sync`). Every USD-per-1M price is converted to integer micro-USD per 1M
tokens; a price with more precision than that is rounded up, never down.

What a model costs follows genai-prices' rules: of its conditional prices, the
last one whose constraint holds at the billing moment applies (a start date, or
a daily UTC time window such as DeepSeek's peak hours), else the first; a
service-tier variant (OpenAI's `flex` / `priority`) then overrides the rates it
names; a tiered rate applies its tier's rate to all tokens once the prompt
exceeds the tier's start.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from genai_prices import data_snapshot
from genai_prices.types import (
    ConditionalPrice,
    ModelInfo,
    ModelPrice,
    PriceVariant,
    Provider,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)

from ai_service.billing.money import MICRO_PER_USD
from ai_service.billing.pricing import ANY_TIER, Applied, Rate, Rates

Constraint = StartDateConstraint | TimeOfDateConstraint | None

# our rate name -> genai-prices price keys, first found wins
KEYS: dict[str, tuple[str, ...]] = {
    "input": ("input_mtok",),
    "output": ("output_mtok",),
    "cache_read": ("cache_read_mtok",),
    "cache_write": ("cache_write_5m_mtok", "cache_write_mtok"),
    "cache_write_1h": ("cache_write_1h_mtok",),
}


def to_micro(value: Decimal) -> int:
    """USD per 1M tokens as integer micro-USD per 1M tokens, rounded up if inexact."""
    return int((value * MICRO_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def is_exact(value: Decimal) -> bool:
    scaled = value * MICRO_PER_USD
    return scaled == scaled.to_integral_value()


def to_rate(value: Decimal | TieredPrices) -> Rate:
    if isinstance(value, TieredPrices):
        tiers = tuple((tier.start, to_micro(tier.price)) for tier in value.tiers)
        return Rate(to_micro(value.base), tiers)
    return Rate(to_micro(value))


def partial(price: ModelPrice) -> dict[str, Rate]:
    """The rates a genai-prices `ModelPrice` sets, by our names."""
    out: dict[str, Rate] = {}
    for name, keys in KEYS.items():
        for key in keys:
            value = price.__dict__.get(key)
            if value is not None:
                out[name] = to_rate(value)
                break
    return out


def rates_of(values: dict[str, Rate]) -> Rates:
    return Rates(
        input=values.get("input", Rate(0)),
        output=values.get("output", Rate(0)),
        cache_read=values.get("cache_read"),
        cache_write=values.get("cache_write"),
        cache_write_1h=values.get("cache_write_1h"),
    )


def active(constraint: Constraint, when: dt.datetime) -> bool:
    return constraint is None or constraint.active(when)


def window(constraint: TimeOfDateConstraint) -> str:
    return f"{constraint.start_time:%H:%M}-{constraint.end_time:%H:%M} UTC"


@dataclass(frozen=True, slots=True)
class Variant:
    tier: str
    constraint: Constraint
    rates: dict[str, Rate]


class GenaiSchedule:
    """A model's conditional prices and service-tier variants, converted once."""

    def __init__(self, model: ModelInfo) -> None:
        prices = model.prices
        conditional = prices if isinstance(prices, list) else [ConditionalPrice(prices=prices)]
        self.periods: list[tuple[Constraint, dict[str, Rate]]] = [
            (c.constraint, partial(c.prices)) for c in conditional
        ]
        self.variants: list[Variant] = [
            Variant(v.when["service_tier"], v.constraint, partial(v.prices))
            for v in model.price_variants or ()
            if _tier_only(v)
        ]
        self._tiers = frozenset(v.tier for v in self.variants)
        self._cache: dict[str | None, tuple[int, list[Rates]]] = {}
        self._applied: dict[tuple[int, str | None], Applied] = {}

    def applied(self, when: dt.datetime | None, service_tier: str | None) -> Applied:
        """The rates in force at `when` (None: now) for `service_tier`, kept per minute
        (the price data's dates and hours change on whole minutes)."""
        minute = _minute(when)
        key = (minute, service_tier)
        found = self._applied.get(key)
        if found is None:
            if len(self._applied) > 256:
                self._applied.clear()
            at = dt.datetime.fromtimestamp(minute * 60, dt.UTC)
            found = self._applied[key] = self._resolve(at, service_tier)
        return found

    def _resolve(self, when: dt.datetime, service_tier: str | None) -> Applied:
        constraint, values = self.periods[0]
        for candidate in reversed(self.periods):
            if active(candidate[0], when):
                constraint, values = candidate
                break
        merged = dict(values)
        tier_used: str | None = None
        if service_tier is not None:
            seen: set[str] = set()
            for variant in self.variants:
                if variant.tier != service_tier or not active(variant.constraint, when):
                    continue
                for name, rate in variant.rates.items():
                    if name not in seen:
                        seen.add(name)
                        merged[name] = rate
                tier_used = service_tier
        return Applied(
            rates_of(merged),
            price_date=_price_date(self.periods, when),
            window=window(constraint) if isinstance(constraint, TimeOfDateConstraint) else None,
            service_tier=tier_used or service_tier,
        )

    def possible(self, now: dt.datetime | None, service_tier: str | None) -> Iterable[Rates]:
        """The standard rates, and those of the service tier asked for, at every moment
        of the next day. A request that asks no tier (or `auto` / `default`) is bounded
        at the standard rates; should the provider serve it at a dearer tier all the
        same, the settlement charges what the provider reports."""
        minute = _minute(now)
        asked = service_tier if service_tier in self._tiers or service_tier == ANY_TIER else None
        cached = self._cache.get(asked)
        if cached is not None and cached[0] == minute:
            return cached[1]
        if now is None:
            now = dt.datetime.now(dt.UTC)
        if asked == ANY_TIER:
            tiers: list[str | None] = [None, *sorted(self._tiers)]
        else:
            tiers = [None] if asked is None else [None, asked]
        found: list[Rates] = []
        for moment in _moments(self.periods, self.variants, now):
            for tier in tiers:
                rates = self.applied(moment, tier).rates
                if rates not in found:
                    found.append(rates)
        self._cache[asked] = (minute, found)
        return found


def _minute(when: dt.datetime | None) -> int:
    """The minute of `when` (None: now) since the epoch."""
    return int((time.time() if when is None else when.timestamp()) // 60)


def _tier_only(variant: PriceVariant) -> bool:
    return set(variant.when) == {"service_tier"}


def _price_date(periods: list[tuple[Constraint, dict[str, Rate]]], when: dt.datetime) -> str | None:
    dates = [
        c.start_date for c, _ in periods if isinstance(c, StartDateConstraint) and c.active(when)
    ]
    return max(dates).isoformat() if dates else None


def _moments(
    periods: list[tuple[Constraint, dict[str, Rate]]], variants: list[Variant], now: dt.datetime
) -> list[dt.datetime]:
    """`now` and every moment of the next day at which another price may start."""
    now = now.astimezone(dt.UTC)
    moments = [now]
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    moments.append(midnight)
    constraints = [c for c, _ in periods] + [v.constraint for v in variants]
    for c in constraints:
        if isinstance(c, TimeOfDateConstraint):
            for t in (c.start_time, c.end_time):
                at = dt.datetime.combine(now.date(), t.replace(tzinfo=t.tzinfo or dt.UTC))
                at = at.astimezone(dt.UTC)
                while at <= now:
                    at += dt.timedelta(days=1)
                moments.append(at)
    return moments


def bundled() -> list[Provider]:
    """The providers of the snapshot bundled with the installed genai-prices."""
    return data_snapshot.get_snapshot().providers


def parse(content: str | bytes) -> list[Provider]:
    """Providers from a genai-prices `data.json` (a JSON array of providers).

    Raises `ValueError` when the text is not a valid provider array.
    """
    import json

    from genai_prices.types import _providers_from_raw  # the package's own data.json parser

    try:
        raw: Any = json.loads(content)
        providers = _providers_from_raw(raw)
    except Exception as exc:
        raise ValueError(f"not a genai-prices data file: {exc}") from None
    if not providers:
        raise ValueError("the price data file has no providers")
    return providers


def inexact_prices(provider: Provider) -> list[str]:
    """The ids of models with a price that micro-USD per 1M tokens cannot hold exactly."""
    found: list[str] = []
    for model in provider.models:
        prices = model.prices
        sets = [c.prices for c in prices] if isinstance(prices, list) else [prices]
        sets += [v.prices for v in model.price_variants or ()]
        for price in sets:
            for key in {k for keys in KEYS.values() for k in keys}:
                value = price.__dict__.get(key)
                values = (
                    [value.base, *(t.price for t in value.tiers)]
                    if isinstance(value, TieredPrices)
                    else [value]
                )
                if any(isinstance(v, Decimal) and not is_exact(v) for v in values):
                    found.append(model.id)
    return sorted(set(found))
