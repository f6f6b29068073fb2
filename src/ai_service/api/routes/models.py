"""GET /ai/{provider}/models (the catalog's models of a provider, OpenAI list shape) and
GET /ai/{provider}/models/{id} (one of them, OpenAI model shape). A key with a model
allow-list sees only the models it may use.

Each priced model carries its standard rates (USD per 1M tokens) and whether the
provider deprecated it; ids the price data no longer prices are listed with
`retired: true`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from ai_service.api.deps import PrincipalDep, StateDep
from ai_service.api.intake import provider_of
from ai_service.api.responses import json_response
from ai_service.billing.money import micro_to_usd
from ai_service.billing.pricing import Price
from ai_service.errors import NotFoundError

router = APIRouter()


def model_entry(provider: str, model_id: str, price: Price) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": provider,
        "input_cost_per_million": float(micro_to_usd(price.input)),
        "output_cost_per_million": float(micro_to_usd(price.output)),
        "context_window": price.context_window,
        "max_output_tokens": price.max_output,
        "deprecated": price.deprecated,
    }
    if price.cached_input is not None:
        entry["cached_input_cost_per_million"] = float(micro_to_usd(price.cached_input))
    if price.cache_write is not None:
        entry["cache_write_cost_per_million"] = float(micro_to_usd(price.cache_write))
    if price.cache_write_1h is not None:
        entry["cache_write_1h_cost_per_million"] = float(micro_to_usd(price.cache_write_1h))
    return entry


@router.get("/ai/{provider}/models", summary="List the catalog's models the key may use")
async def list_models(provider: str, state: StateDep, principal: PrincipalDep) -> Response:
    target = provider_of(provider)
    catalog = await state.catalog.get()
    data = [
        model_entry(target, mid, price)
        for mid, price in sorted(catalog.models(target).items())
        if principal.may_use(target, mid, mid)
    ]
    for alias, model in sorted(catalog.aliases.get(target, {}).items()):
        price = catalog.price(target, model)
        if price is not None and principal.may_use(target, alias, model):
            data.append({**model_entry(target, alias, price), "alias_of": model})
    # ids the gateway listed that the price data no longer prices: refused (or
    # charged at the dearest price, flagged), shown so that clients can move off them
    data += [
        {"id": mid, "object": "model", "created": 0, "owned_by": target, "retired": True}
        for mid in catalog.retired(target)
        if principal.may_use(target, mid, mid)
    ]
    return json_response({"object": "list", "data": data})


@router.get("/ai/{provider}/models/{model_id:path}", summary="One model of the catalog")
async def get_model(
    provider: str, model_id: str, state: StateDep, principal: PrincipalDep
) -> Response:
    """The model as `/models` lists it: an alias names its model, a retired id says so; a
    model the key may not use is not found."""
    target = provider_of(provider)
    catalog = await state.catalog.get()
    model = catalog.aliases.get(target, {}).get(model_id, model_id)
    shown = principal.may_use(target, model_id, model)
    price = catalog.price(target, model) if shown else None
    if price is not None:
        entry = model_entry(target, model_id, price)
        if model != model_id:
            entry["alias_of"] = model
        return json_response(entry)
    if shown and model_id in catalog.retired(target):
        return json_response(
            {"id": model_id, "object": "model", "created": 0, "owned_by": target, "retired": True}
        )
    raise NotFoundError(
        f"The model '{model_id}' does not exist on the {target} path; "
        f"GET /ai/{provider}/models lists the models served.",
        code="model_not_found",
    )
