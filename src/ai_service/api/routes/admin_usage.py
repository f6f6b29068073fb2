"""Admin API, usage: `/ai/admin/api/requests...` and `/ai/admin/api/usage/...`.

Filters (all optional): `user` (name), `provider`, `model` (the served model),
`status` (`ok`, `error`, `cancelled`, `pending`), `since` / `until` (ISO 8601
or Unix seconds, read by `usage.parse_time`; without an offset the time is UTC;
`until` is exclusive).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from ai_service.api.admin_auth import AdminDep
from ai_service.api.deps import Since, StateDep, Until
from ai_service.api.responses import json_response
from ai_service.services import accounts, usage

router = APIRouter(prefix="/ai/admin/api", tags=["admin: usage"], dependencies=[AdminDep])

Status = Literal["ok", "error", "cancelled", "pending"]


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """The shared filter parameters of the usage routes."""

    user: str | None
    provider: str | None
    model: str | None
    status: Status | None
    since: dt.datetime | None
    until: dt.datetime | None

    async def filters(self, session: AsyncSession) -> usage.Filters:
        """Raises `NotFoundError` for an unknown user."""
        user_id = None
        if self.user:
            user_id = (await accounts.get_user(session, self.user)).id
        return usage.Filters(
            user_id, self.provider, self.model, self.status, self.since, self.until
        )


def filter_params(
    user: Annotated[str | None, Query(description="user name")] = None,
    provider: Annotated[str | None, Query(description="provider path segment")] = None,
    model: Annotated[str | None, Query(description="served model id")] = None,
    status: Annotated[Status | None, Query(description="outcome")] = None,
    since: Since = None,
    until: Until = None,
) -> UsageQuery:
    return UsageQuery(user, provider, model, status, since, until)


FilterDep = Annotated[UsageQuery, Depends(filter_params)]


@router.get("/requests", summary="The request log, newest first, filtered and paged")
async def list_requests(
    state: StateDep,
    q: FilterDep,
    limit: Annotated[int, Query(ge=1, le=usage.MAX_PAGE)] = 50,
    before: Annotated[int | None, Query(description="rows older than this row id")] = None,
) -> Response:
    async with state.sessions() as session:
        f = await q.filters(session)
        page = await usage.requests_page(
            session,
            user_id=f.user_id,
            provider=f.provider,
            model=f.model,
            status=f.status,
            since=f.since,
            until=f.until,
            limit=limit,
            before=before,
        )
    return json_response(page)


@router.get("/requests/{request_id}", summary="One request with its stored payloads")
async def show_request(request_id: str, state: StateDep) -> Response:
    async with state.sessions() as session:
        return json_response(await usage.request_detail(session, request_id))


@router.get("/usage/summary", summary="Totals, by provider, by model and the top users")
async def usage_summary(
    state: StateDep,
    q: FilterDep,
    top: Annotated[int, Query(ge=1, le=100, description="how many top users")] = 10,
) -> Response:
    async with state.sessions() as session:
        return json_response(await usage.summary(session, await q.filters(session), top))


@router.get("/usage/daily", summary="Requests, errors, tokens and spend per UTC day")
async def usage_daily(
    state: StateDep,
    q: FilterDep,
    days: Annotated[int, Query(ge=1, le=usage.MAX_DAYS, description="without since")] = 30,
    group_by: Annotated[Literal["provider", "model"] | None, Query()] = None,
) -> Response:
    since, until = usage.window(days, q.since, q.until)
    async with state.sessions() as session:
        f = await q.filters(session)
        f = usage.Filters(f.user_id, f.provider, f.model, f.status, since, until)
        return json_response(await usage.daily(session, f, group_by))
