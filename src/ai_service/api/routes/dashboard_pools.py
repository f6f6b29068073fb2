"""The dashboard's pools page: `/ai/admin/pools`: every upstream credential with its state,
and putting a disabled one back in service."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from ai_service.api.deps import get_state
from ai_service.api.web import BASE, error_page, gate, read_form, render
from ai_service.errors import ServiceError
from ai_service.services import pool_admin

router = APIRouter(include_in_schema=False)


@router.get(BASE + "/pools", response_model=None)
async def pools_page(request: Request, done: str | None = None) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    state = get_state(request)
    for pool in state.pools.pools.values():
        await state.pools.fresh(pool)
    return render(
        request,
        "pools.html",
        200,
        credentials=pool_admin.views(state.pools),
        shared=state.pools.shared is not None,
        notice="Credential back in service." if done == "enable" else None,
    )


@router.post(BASE + "/pools/{provider}/{label}/enable", response_model=None)
async def enable(request: Request, provider: str, label: str) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    try:
        await read_form(request)
        await pool_admin.enable(get_state(request).pools, provider, label)
    except ServiceError as exc:
        return error_page(request, exc)
    return RedirectResponse(f"{BASE}/pools?done=enable", 303)
