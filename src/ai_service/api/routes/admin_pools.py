"""Admin API, upstream pools: `/ai/admin/api/pools` and putting a credential back in service.

Each credential is shown by its label, never its key; `enable` puts back a
credential an auth failure took out (shared with every instance through Redis).
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from ai_service.api.admin_auth import AdminDep
from ai_service.api.deps import StateDep
from ai_service.api.responses import json_response
from ai_service.api.routes.admin import PREFIX
from ai_service.services import credential_admin, pool_admin

router = APIRouter(prefix=PREFIX, tags=["admin: pools"], dependencies=[AdminDep])


class NewCredential(BaseModel):
    provider: str = Field(max_length=32, examples=["openai"])
    label: str = Field(max_length=64, examples=["team-b"])
    key: str | None = Field(
        None,
        max_length=4096,
        description="the upstream key: stored encrypted (needs AI_SERVICE_CREDENTIALS_KEY), "
        "never shown again",
    )
    key_env: str | None = Field(
        None, max_length=128, description="or the name of a variable holding it"
    )
    base_url: str | None = Field(None, max_length=2048)
    weight: int = Field(1, ge=1, le=1000)
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


@router.get("/pools", summary="The upstream credentials of every pool, with their state")
async def list_pools(state: StateDep) -> Response:
    for pool in state.pools.pools.values():
        await state.pools.fresh(pool)
    return json_response({"object": "list", "data": pool_admin.views(state.pools)})


@router.post("/pools", summary="Add a credential to a provider's pool", status_code=201)
async def add(body: NewCredential, state: StateDep) -> Response:
    async with state.sessions() as session:
        view = await credential_admin.add(
            session,
            state.settings,
            body.provider,
            body.label,
            key=body.key,
            key_env=body.key_env,
            base_url=body.base_url,
            weight=body.weight,
            rpm=body.rpm,
            tpm=body.tpm,
        )
    await credential_admin.refresh(state)  # this instance at once, the others within seconds
    return json_response(view, 201)


@router.delete("/pools/{provider}/{label}", summary="Remove a stored credential")
async def remove(provider: str, label: str, state: StateDep) -> Response:
    async with state.sessions() as session:
        await credential_admin.remove(session, provider, label)
    await credential_admin.refresh(state)
    return json_response({"provider": provider, "label": label, "deleted": True})


@router.post(
    "/pools/{provider}/{label}/enable",
    summary="Put a credential back in service (after an auth failure took it out)",
)
async def enable(provider: str, label: str, state: StateDep) -> Response:
    return json_response(await pool_admin.enable(state.pools, provider, label))
