"""GET /ai/key, GET /ai/account and GET /ai/usage: a key holder's own key, balance, spend
and request log.

All need the caller's key (`X-API-Key` or Bearer) and show only that key
owner's data. Money is an exact USD decimal string (`"9.99961"`); days and
months are UTC.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from ai_service.api.deps import PrincipalDep, Since, StateDep, Until
from ai_service.api.responses import json_response
from ai_service.services import key_report, usage

router = APIRouter(tags=["account"])


@router.get(
    "/ai/key",
    summary="The caller's key: its user, expiry, allowed models, rate limits, balance, spend",
)
async def get_key(state: StateDep, principal: PrincipalDep) -> Response:
    async with state.sessions() as session:
        return json_response(await key_report.key_report(session, principal, state.settings))


@router.get(
    "/ai/account",
    summary="The caller's balance, spend and request counts (today, this month, total), "
    "totals per model, the user's rate limits and the budgets its requests must stay within",
)
async def get_account(state: StateDep, principal: PrincipalDep) -> Response:
    async with state.sessions() as session:
        return json_response(await key_report.account_report(session, principal, state.settings))


@router.get("/ai/usage", summary="The caller's request log, newest first, paged")
async def get_usage(
    state: StateDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=usage.MAX_PAGE)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="rows older than this row id")
    ] = None,
    provider: Annotated[str | None, Query(description="provider path segment")] = None,
    model: Annotated[str | None, Query(description="served model id")] = None,
    status: Annotated[Literal["ok", "error", "cancelled", "pending"] | None, Query()] = None,
    since: Since = None,
    until: Until = None,
) -> Response:
    async with state.sessions() as session:
        page = await usage.requests_page(
            session,
            user_id=principal.user_id,
            limit=limit,
            before=before,
            provider=provider,
            model=model,
            status=status,
            since=since,
            until=until,
        )
    return json_response(page)
