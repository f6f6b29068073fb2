"""The model catalog: seeded from the packaged YAML, kept in `api_models`, cached in memory.

`api_model_aliases` maps a requested id to the id sent upstream; the
`api_models` row with model_id `*` is the provider's default price, applied to
models that are not in the catalog.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.billing.money import price_to_micro
from ai_service.billing.pricing import Price
from ai_service.storage.models import ApiModel, ApiModelAlias

DEFAULT_MODEL = "*"
FALLBACK_PRICE = Price(input=10_000_000, output=30_000_000, max_output=4096)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A requested model resolved to the upstream id and the price that applies."""

    requested: str
    model: str
    price: Price
    default_price: bool


@dataclass(slots=True)
class Catalog:
    """An in-memory snapshot of `api_models`."""

    prices: dict[str, dict[str, Price]] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    defaults: dict[str, Price] = field(default_factory=dict)

    def resolve(self, provider: str, requested: str) -> Resolved:
        model = self.aliases.get(provider, {}).get(requested, requested)
        price = self.prices.get(provider, {}).get(model)
        if price is not None:
            return Resolved(requested, model, price, False)
        return Resolved(requested, model, self.defaults.get(provider, FALLBACK_PRICE), True)

    def models(self, provider: str) -> dict[str, Price]:
        return self.prices.get(provider, {})

    @classmethod
    def from_rows(cls, rows: list[ApiModel], aliases: list[ApiModelAlias]) -> Catalog:
        catalog = cls()
        for alias in aliases:
            catalog.aliases.setdefault(alias.provider, {})[alias.alias] = alias.target
        for row in rows:
            price = price_of(row)
            if row.model_id == DEFAULT_MODEL:
                catalog.defaults[row.provider] = price
            else:
                catalog.prices.setdefault(row.provider, {})[row.model_id] = price
        return catalog


def price_of(row: ApiModel) -> Price:
    return Price(
        input=row.input_price,
        output=row.output_price,
        cached_input=row.cached_input_price,
        cache_write=row.cache_write_price,
        context_window=row.context_window,
        max_output=row.max_output_tokens or 4096,
        reasoning=row.reasoning,
    )


async def load(session: AsyncSession) -> Catalog:
    rows = (await session.scalars(select(ApiModel))).all()
    aliases = (await session.scalars(select(ApiModelAlias))).all()
    return Catalog.from_rows(list(rows), list(aliases))


def seed_rows() -> tuple[list[ApiModel], list[ApiModelAlias]]:
    """The packaged catalog as unsaved `ApiModel` rows (models, defaults and aliases)."""
    text = resources.files("ai_service.catalog").joinpath("models.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    rows: list[ApiModel] = []
    aliases: list[ApiModelAlias] = []
    for provider, spec in data["providers"].items():
        default = spec.get("default")
        if default:
            rows.append(_row(provider, {**default, "id": DEFAULT_MODEL}))
        for entry in spec.get("models", []):
            rows.append(_row(provider, entry))
        for alias, target in (spec.get("aliases") or {}).items():
            aliases.append(ApiModelAlias(provider=provider, alias=alias, target=target))
    return rows, aliases


def _row(provider: str, entry: dict[str, Any]) -> ApiModel:
    def optional(name: str) -> int | None:
        value = entry.get(name)
        return None if value is None else price_to_micro(str(value))

    checked = entry.get("checked")
    if isinstance(checked, str):
        checked = dt.date.fromisoformat(checked)
    return ApiModel(
        provider=provider,
        model_id=str(entry["id"]),
        input_price=price_to_micro(str(entry["input"])),
        output_price=price_to_micro(str(entry["output"])),
        cached_input_price=optional("cached_input"),
        cache_write_price=optional("cache_write"),
        context_window=int(entry.get("context_window", 0)),
        max_output_tokens=int(entry.get("max_output", 4096)),
        reasoning=bool(entry.get("reasoning", False)),
        price_checked_on=checked,
    )


async def seed(session: AsyncSession) -> int:
    """Insert the packaged models that `api_models` lacks; operators' edits are kept."""
    existing = set((await session.execute(select(ApiModel.provider, ApiModel.model_id))).all())
    known = set((await session.execute(select(ApiModelAlias.provider, ApiModelAlias.alias))).all())
    rows, aliases = seed_rows()
    added = 0
    for row in rows:
        if (row.provider, row.model_id) not in existing:
            session.add(row)
            added += 1
    for alias in aliases:
        if (alias.provider, alias.alias) not in known:
            session.add(alias)
    await session.commit()
    return added
