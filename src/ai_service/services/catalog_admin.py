"""Catalog edits by operators: list, set a price, add an alias (CLI and admin API)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.billing import catalog
from ai_service.billing.money import MAX_PRICE_USD, micro_to_usd, price_to_micro
from ai_service.billing.pricing import Price
from ai_service.errors import InvalidRequestError, NotFoundError
from ai_service.providers import REGISTRY
from ai_service.storage.models import ApiModel, ApiModelAlias


def _usd(value: int | None) -> str | None:
    return None if value is None else str(micro_to_usd(value))


def model_view(row: ApiModel) -> dict[str, Any]:
    """An operator's override row."""
    return {
        "provider": row.provider,
        "model": row.model_id,
        "input_per_million": _usd(row.input_price),
        "cached_input_per_million": _usd(row.cached_input_price),
        "cache_write_per_million": _usd(row.cache_write_price),
        "cache_write_1h_per_million": _usd(row.cache_write_1h_price),
        "output_per_million": _usd(row.output_price),
        "context_window": row.context_window,
        "max_output_tokens": row.max_output_tokens,
        "source": "override",
        "priced_as": row.model_id,
        "deprecated": False,
        "retired": False,
    }


def price_view(provider: str, model: str, price: Price) -> dict[str, Any]:
    """A model as the catalog prices it now (standard rates; tiers and variants in the data)."""
    return {
        "provider": provider,
        "model": model,
        "input_per_million": _usd(price.input),
        "cached_input_per_million": _usd(price.cached_input),
        "cache_write_per_million": _usd(price.cache_write),
        "cache_write_1h_per_million": _usd(price.cache_write_1h),
        "output_per_million": _usd(price.output),
        "context_window": price.context_window,
        "max_output_tokens": price.max_output,
        "source": price.source,
        "priced_as": price.priced_as,
        "deprecated": price.deprecated,
        "retired": False,
    }


MODEL_MAX = 200


def _provider(name: str) -> str:
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise InvalidRequestError(
            f"Unknown provider '{name}'; use one of: {known}.", param="provider"
        )
    return name


def _model_id(name: str, param: str) -> str:
    name = name.strip()
    if not name or len(name) > MODEL_MAX:
        raise InvalidRequestError(f"A model id has 1 to {MODEL_MAX} characters.", param=param)
    return name


def _price(value: str, param: str) -> int:
    try:
        return price_to_micro(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(
            f"Invalid price {value!r} for '{param}': give USD per 1M tokens as a decimal "
            'string such as "0.15" (at most 6 decimals, not negative, at most '
            f"{MAX_PRICE_USD}).",
            param=param,
        ) from exc


def _count(value: int | None, param: str) -> int | None:
    if value is not None and value < 0:
        raise InvalidRequestError(f"'{param}' cannot be negative.", param=param)
    return value


async def list_models(
    session: AsyncSession, provider: str | None = None, policy: str = "refuse"
) -> list[dict[str, Any]]:
    """The gateway's priced models (packaged list and overrides), the retired ids of the
    packaged list, then every alias (with `alias_of` set)."""
    current = await catalog.load(session, policy)
    names = [provider] if provider else list(REGISTRY)
    rows: list[dict[str, Any]] = []
    for name in names:
        rows += [price_view(name, m, p) for m, p in current.models(name).items()]
        rows += [
            {"provider": name, "model": m, "retired": True, "alias_of": None}
            for m in current.retired(name)
        ]
    for row in rows:
        row.setdefault("alias_of", None)
    for name in names:
        rows += [
            {"provider": name, "model": alias, "alias_of": target}
            for alias, target in sorted(current.aliases.get(name, {}).items())
        ]
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
    cache_write_1h: str | None = None,
) -> dict[str, Any]:
    """Create or update an operator's override of a model's price (USD per 1M tokens,
    as decimal strings); an override wins over the price data.

    Raises `InvalidRequestError` for an unknown provider, a bad model id or a bad price.
    """
    provider = _provider(provider)
    model = _model_id(model, "model")
    prices = (
        _price(input, "input"),
        _price(output, "output"),
        None if cached_input is None else _price(cached_input, "cached_input"),
        None if cache_write is None else _price(cache_write, "cache_write"),
    )
    hour = None if cache_write_1h is None else _price(cache_write_1h, "cache_write_1h")
    context_window = _count(context_window, "context_window")
    max_output = _count(max_output, "max_output")
    row = await session.scalar(
        select(ApiModel).where(ApiModel.provider == provider, ApiModel.model_id == model)
    )
    if row is None:
        row = ApiModel(provider=provider, model_id=model, context_window=0, max_output_tokens=4096)
        session.add(row)
    row.input_price, row.output_price, row.cached_input_price, row.cache_write_price = prices
    row.cache_write_1h_price = hour
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
    """Map `alias` to `target` for a provider (replacing an earlier mapping).

    Raises `InvalidRequestError` for an unknown provider or an empty id.
    """
    provider = _provider(provider)
    alias = _model_id(alias, "alias")
    target = _model_id(target, "target")
    if alias == target:
        raise InvalidRequestError("An alias cannot point to itself.", param="target")
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


async def remove_alias(session: AsyncSession, provider: str, alias: str) -> dict[str, Any]:
    """Delete an alias; the id is then sent upstream as it is. Raises `NotFoundError`."""
    provider = _provider(provider)
    row = await session.scalar(
        select(ApiModelAlias).where(
            ApiModelAlias.provider == provider, ApiModelAlias.alias == alias
        )
    )
    if row is None:
        raise NotFoundError(f"No alias '{alias}' for provider '{provider}'.")
    view = alias_view(row)
    await session.delete(row)
    await session.commit()
    return view
