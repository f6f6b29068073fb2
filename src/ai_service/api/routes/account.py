"""GET /ai/account and GET /ai/usage: a key holder's own balance and request log."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.responses import Response

from ai_service.api.deps import PrincipalDep, StateDep
from ai_service.api.responses import json_response
from ai_service.services import usage

router = APIRouter()


@router.get("/ai/account", summary="The caller's balance and spend totals")
async def get_account(state: StateDep, principal: PrincipalDep) -> Response:
    async with state.sessions() as session:
        return json_response(await usage.account(session, principal.user_id))


@router.get("/ai/usage", summary="The caller's request log, newest first")
async def get_usage(
    state: StateDep,
    principal: PrincipalDep,
    limit: int = Query(50, ge=1, le=usage.MAX_PAGE),
    before: int | None = Query(None, description="return rows older than this row id"),
) -> Response:
    async with state.sessions() as session:
        page = await usage.requests_page(
            session, user_id=principal.user_id, limit=limit, before=before
        )
    return json_response(page)
