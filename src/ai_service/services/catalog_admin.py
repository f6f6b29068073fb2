"""Catalog edits by operators: list, set a price, add an alias (CLI and admin API)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.billing.money import micro_to_usd, price_to_micro
from ai_service.errors import InvalidRequestError
from ai_service.providers import PATHS
from ai_service.storage.models import ApiModel, ApiModelAlias


def model_view(row: ApiModel) -> dict[str, Any]:
    def usd(value: int | None) -> str | None:
        return None if value is None else str(micro_to_usd(value))

    return {
        "provider": row.provider,
        "model": row.model_id,
        "input_per_million": usd(row.input_price),
        "cached_input_per_million": usd(row.cached_input_price),
        "cache_write_per_million": usd(row.cache_write_price),
        "output_per_million": usd(row.output_price),
        "context_window": row.context_window,
        "max_output_tokens": row.max_output_tokens,
        "price_checked_on": row.price_checked_on.isoformat() if row.price_checked_on else None,
    }


def _provider(name: str) -> str:
    if name not in PATHS or name == "v1":
        raise InvalidRequestError(f"Unknown provider '{name}'.", param="provider")
    return name


async def list_models(session: AsyncSession, provider: str | None = None) -> list[dict[str, Any]]:
    """Every priced model, then every alias (with `alias_of` set)."""
    stmt = select(ApiModel).order_by(ApiModel.provider, ApiModel.model_id)
    alias_stmt = select(ApiModelAlias).order_by(ApiModelAlias.provider, ApiModelAlias.alias)
    if provider:
        stmt = stmt.where(ApiModel.provider == provider)
        alias_stmt = alias_stmt.where(ApiModelAlias.provider == provider)
    rows = [{**model_view(r), "alias_of": None} for r in (await session.scalars(stmt)).all()]
    rows += [alias_view(a) for a in (await session.scalars(alias_stmt)).all()]
    return rows


def alias_view(alias: ApiModelAlias) -> dict[str, Any]:
    return {"provider": alias.provider, "model": alias.alias, "alias_of": alias.target}


async def set_price(
    session: AsyncSession,
    provider: str,
    model: str,
    *,
    input: str,
    output: str,
    cached_input: str | None = None,
    cache_write: str | None = None,
    context_window: int | None = None,
    max_output: int | None = None,
) -> dict[str, Any]:
    """Create or update a model's price row (prices in USD per 1M tokens, as decimal strings)."""
    provider = _provider(provider)
    row = await session.scalar(
        select(ApiModel).where(ApiModel.provider == provider, ApiModel.model_id == model)
    )
    if row is None:
        row = ApiModel(provider=provider, model_id=model, context_window=0, max_output_tokens=4096)
        session.add(row)
    row.input_price = price_to_micro(input)
    row.output_price = price_to_micro(output)
    row.cached_input_price = None if cached_input is None else price_to_micro(cached_input)
    row.cache_write_price = None if cache_write is None else price_to_micro(cache_write)
    if context_window is not None:
        row.context_window = context_window
    if max_output is not None:
        row.max_output_tokens = max_output
    row.reasoning = bool(row.reasoning)
    row.price_checked_on = dt.datetime.now(dt.UTC).date()
    await session.commit()
    return model_view(row)


async def set_alias(
    session: AsyncSession, provider: str, alias: str, target: str
) -> dict[str, Any]:
    """Map `alias` to `target` for a provider (replacing an earlier mapping)."""
    provider = _provider(provider)
    row = await session.scalar(
        select(ApiModelAlias).where(
            ApiModelAlias.provider == provider, ApiModelAlias.alias == alias
        )
    )
    if row is None:
        row = ApiModelAlias(provider=provider, alias=alias, target=target)
        session.add(row)
    row.target = target
    await session.commit()
    return alias_view(row)
