"""The dashboard's pools page: `/ai/admin/pools`: every upstream credential with its state,
and putting a disabled one back in service."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from ai_service.api.deps import get_state
from ai_service.api.web import BASE, error_page, gate, read_form, render
from ai_service.errors import InvalidRequestError, ServiceError
from ai_service.providers import REGISTRY
from ai_service.services import credential_admin, pool_admin

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
        providers=list(REGISTRY),
        can_encrypt=state.settings.credentials_key is not None,
        notice=NOTICES.get(done or ""),
    )


NOTICES = {
    "enable": "Credential back in service.",
    "add": "Credential added.",
    "remove": "Credential removed.",
}


def _number(form: dict[str, str], name: str) -> int | None:
    text = form.get(name, "")
    if not text:
        return None
    if not text.isdigit():
        raise InvalidRequestError(f"{name}: a whole number.", param=name)
    return int(text)


@router.post(BASE + "/pools", response_model=None)
async def add(request: Request) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    state = get_state(request)
    try:
        form = await read_form(request)
        async with state.sessions() as session:
            await credential_admin.add(
                session,
                state.settings,
                form.get("provider", ""),
                form.get("label", ""),
                key=form.get("key") or None,
                key_env=form.get("key_env") or None,
                base_url=form.get("base_url") or None,
                weight=_number(form, "weight") or 1,
                rpm=_number(form, "rpm"),
                tpm=_number(form, "tpm"),
            )
        await credential_admin.refresh(state)
    except ServiceError as exc:
        return error_page(request, exc)
    return RedirectResponse(f"{BASE}/pools?done=add", 303)


@router.post(BASE + "/pools/{provider}/{label}/remove", response_model=None)
async def remove(request: Request, provider: str, label: str) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    state = get_state(request)
    try:
        await read_form(request)
        async with state.sessions() as session:
            await credential_admin.remove(session, provider, label)
        await credential_admin.refresh(state)
    except ServiceError as exc:
        return error_page(request, exc)
    return RedirectResponse(f"{BASE}/pools?done=remove", 303)


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
