"""Admin API, the model catalog: `/ai/admin/api/models...` and `/ai/admin/api/aliases...`.

Prices come from the price data (genai-prices); `PUT /models` sets an
operator's override, `POST /price-data` loads a newer genai-prices `data.json`.
Prices are USD per 1M tokens as decimal strings. A change is visible to this
instance at once and to the others within `AI_SERVICE_CATALOG_REFRESH_SECONDS`.
Model ids may contain `/` (Together's do), so they travel in the body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from ai_service.api.admin_auth import AdminDep
from ai_service.api.deps import StateDep
from ai_service.api.responses import json_response
from ai_service.billing import catalog
from ai_service.errors import InvalidRequestError
from ai_service.services import catalog_admin

router = APIRouter(prefix="/ai/admin/api", tags=["admin: models"], dependencies=[AdminDep])

PRICE_HELP = "USD per 1M tokens, as a decimal string (at most 6 decimals)"


class PriceUpdate(BaseModel):
    provider: str = Field(examples=["openai"], description="provider path segment")
    model: str = Field(
        max_length=200, examples=["gpt-5.4-mini"], description="model id; `*` = default"
    )
    input: str = Field(max_length=32, description=PRICE_HELP, examples=["0.25"])
    output: str = Field(max_length=32, description=PRICE_HELP, examples=["2.00"])
    cached_input: str | None = Field(None, max_length=32, description=PRICE_HELP)
    cache_write: str | None = Field(None, max_length=32, description=PRICE_HELP)
    cache_write_1h: str | None = Field(None, max_length=32, description=PRICE_HELP)
    context_window: int | None = Field(None, ge=0)
    max_output_tokens: int | None = Field(None, ge=0)


class AliasUpdate(BaseModel):
    provider: str = Field(examples=["openai"])
    alias: str = Field(max_length=200, examples=["gpt-4o"])
    target: str = Field(max_length=200, examples=["gpt-5.4-mini"])


@router.get("/models", summary="The catalog: priced models, then aliases")
async def list_models(
    state: StateDep,
    provider: Annotated[str | None, Query(description="only this provider")] = None,
) -> Response:
    async with state.sessions() as session:
        rows = await catalog_admin.list_models(
            session, provider, state.settings.unknown_model_policy
        )
    return json_response({"object": "list", "data": rows})


@router.put("/models", summary="Set (or add) a model's prices")
async def set_price(body: PriceUpdate, state: StateDep) -> Response:
    async with state.sessions() as session:
        row = await catalog_admin.set_price(
            session,
            body.provider,
            body.model,
            input=body.input,
            output=body.output,
            cached_input=body.cached_input,
            cache_write=body.cache_write,
            cache_write_1h=body.cache_write_1h,
            context_window=body.context_window,
            max_output=body.max_output_tokens,
        )
    await state.catalog.reload()
    return json_response(row)


@router.post("/price-data", summary="Load a newer genai-prices data.json for new requests")
async def load_price_data(
    request: Request,
    state: StateDep,
    source: Annotated[str, Query(max_length=500, description="where the file came from")] = "api",
) -> Response:
    """The body is the data file (a JSON array of providers). Requests priced before keep
    the price recorded in their row; new requests use the new data."""
    content = (await request.body()).decode("utf-8", errors="replace")
    async with state.sessions() as session:
        try:
            loaded = await catalog.sync(session, content, source)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
    await state.catalog.reload()
    return json_response(loaded)


@router.put("/aliases", summary="Map a requested model id to the id sent upstream")
async def set_alias(body: AliasUpdate, state: StateDep) -> Response:
    async with state.sessions() as session:
        row = await catalog_admin.set_alias(session, body.provider, body.alias, body.target)
    await state.catalog.reload()
    return json_response(row)


@router.delete("/aliases", summary="Remove an alias")
async def remove_alias(
    state: StateDep,
    provider: Annotated[str, Query()],
    alias: Annotated[str, Query()],
) -> Response:
    async with state.sessions() as session:
        row = await catalog_admin.remove_alias(session, provider, alias)
    await state.catalog.reload()
    return json_response(row)
