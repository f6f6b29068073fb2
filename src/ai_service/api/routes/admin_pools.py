"""Admin API, upstream pools: `/ai/admin/api/pools` and putting a credential back in service.

Each credential is shown by its label, never its key; `enable` puts back a
credential an auth failure took out (shared with every instance through Redis).
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from ai_service.api.admin_auth import AdminDep
from ai_service.api.deps import StateDep
from ai_service.api.responses import json_response
from ai_service.api.routes.admin import PREFIX
from ai_service.services import pool_admin

router = APIRouter(prefix=PREFIX, tags=["admin: pools"], dependencies=[AdminDep])


@router.get("/pools", summary="The upstream credentials of every pool, with their state")
async def list_pools(state: StateDep) -> Response:
    for pool in state.pools.pools.values():
        await state.pools.fresh(pool)
    return json_response({"object": "list", "data": pool_admin.views(state.pools)})


@router.post(
    "/pools/{provider}/{label}/enable",
    summary="Put a credential back in service (after an auth failure took it out)",
)
async def enable(provider: str, label: str, state: StateDep) -> Response:
    return json_response(await pool_admin.enable(state.pools, provider, label))
