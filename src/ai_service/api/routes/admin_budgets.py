"""Admin API, budgets: `/ai/admin/api/users/{name}/budgets`, `/ai/admin/api/keys/{prefix}/budgets`
and `/ai/admin/api/budgets/{id}`.

A budget is a spend limit per period on a user or on one key (`billing.budgets`);
setting one for a scope and period that has one changes its limit. A change
takes effect on this instance at once and on the others within the key
cache's lifetime (`key_cache_seconds`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from ai_service.api.admin_auth import AdminDep
from ai_service.api.deps import StateDep
from ai_service.api.responses import json_response
from ai_service.api.routes.admin import PREFIX, USD_HELP, parse_usd
from ai_service.services import accounts, budget_admin
from ai_service.state import AppState

router = APIRouter(prefix=PREFIX, tags=["admin: budgets"], dependencies=[AdminDep])


class NewBudget(BaseModel):
    period: str = Field(
        description="day, week, month (UTC calendar periods, or rolling windows) or total "
        "(a lifetime limit)",
        examples=["month"],
    )
    limit_usd: str = Field(max_length=32, description=USD_HELP, examples=["50.00"])
    rolling: bool = Field(False, description="the last 24 hours / 7 days / 30 days")


async def _set(state: AppState, body: NewBudget, **scope: Any) -> Response:
    limit = parse_usd(body.limit_usd, "limit_usd")
    async with state.sessions() as session:
        budget = await budget_admin.set_budget(
            session, period=body.period, rolling=body.rolling, limit=limit, **scope
        )
        views = await budget_admin.budget_views(session, budget.user_id)
    state.keys.forget()
    (view,) = [v for v in views if v["id"] == budget.id]
    return json_response(view, 201)


@router.post("/users/{name}/budgets", summary="Set a user's budget for a period")
async def set_user_budget(name: str, body: NewBudget, state: StateDep) -> Response:
    return await _set(state, body, user_name=name)


@router.post("/keys/{prefix}/budgets", summary="Set a key's budget for a period")
async def set_key_budget(prefix: str, body: NewBudget, state: StateDep) -> Response:
    return await _set(state, body, key_prefix=prefix)


@router.get(
    "/users/{name}/budgets",
    summary="A user's budgets and its keys', each with what it used this period",
)
async def list_budgets(name: str, state: StateDep) -> Response:
    async with state.sessions() as session:
        await accounts.get_user(session, name)
        views = await budget_admin.budget_views_by_name(session, name)
    return json_response({"object": "list", "data": views})


@router.delete("/budgets/{budget_id}", summary="Remove a budget")
async def remove_budget(budget_id: int, state: StateDep) -> Response:
    async with state.sessions() as session:
        await budget_admin.remove_budget(session, budget_id)
    state.keys.forget()
    return json_response({"id": budget_id, "deleted": True})
