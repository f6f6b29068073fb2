"""The dashboard's request log, request detail (with payloads) and models pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response

from ai_service.api.deps import get_state
from ai_service.api.web import BASE, error_page, gate, read_form, render
from ai_service.errors import InvalidRequestError, ServiceError
from ai_service.providers import REGISTRY
from ai_service.services import accounts, catalog_admin, usage

router = APIRouter(include_in_schema=False)
PAGE = 50
STATUSES = ("ok", "error", "cancelled", "pending")
PROVIDERS = tuple(sorted(REGISTRY))
FILTERS = ("user", "provider", "model", "status", "since", "until")


def parse_day(text: str, param: str) -> dt.datetime | None:
    """A `YYYY-MM-DD` form field as midnight UTC (by `usage.parse_time`).

    Raises `InvalidRequestError`.
    """
    try:
        return usage.parse_time(text)
    except ValueError as exc:
        raise InvalidRequestError(
            f"'{param}' must be a date (YYYY-MM-DD) from 1900 to 9998.", param=param
        ) from exc


@router.get(BASE + "/requests", response_model=None)
async def requests_page(request: Request, before: int | None = None) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    query = {name: request.query_params.get(name, "").strip() for name in FILTERS}
    page: dict[str, Any] = {"data": [], "has_more": False, "next_before": None}
    error = None
    try:
        since = parse_day(query["since"], "since")
        until = parse_day(query["until"], "until")
        async with get_state(request).sessions() as session:
            user_id = None
            if query["user"]:
                user_id = (await accounts.get_user(session, query["user"])).id
            page = await usage.requests_page(
                session,
                user_id=user_id,
                provider=query["provider"] or None,
                model=query["model"] or None,
                status=query["status"] or None,
                since=since,
                until=until + dt.timedelta(days=1) if until else None,
                limit=PAGE,
                before=before,
            )
    except ServiceError as exc:
        error = exc.message
    kept = {k: v for k, v in query.items() if v}
    older = None
    if page["next_before"] is not None:
        older = f"{BASE}/requests?{urlencode({**kept, 'before': page['next_before']})}"
    return render(
        request,
        "requests.html",
        400 if error else 200,
        rows=page["data"],
        query=query,
        older=older,
        newest=f"{BASE}/requests?{urlencode(kept)}" if before else None,
        providers=PROVIDERS,
        statuses=STATUSES,
        error=error,
    )


@router.get(BASE + "/requests/{request_id}", response_model=None)
async def request_page(request: Request, request_id: str) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    try:
        async with get_state(request).sessions() as session:
            detail = await usage.request_detail(session, request_id)
    except ServiceError as exc:
        return error_page(request, exc)
    return render(request, "request.html", r=detail)


async def models_page(
    request: Request, *, notice: str | None = None, error: str | None = None, status: int = 200
) -> Response:
    async with get_state(request).sessions() as session:
        rows = await catalog_admin.list_models(session)
    return render(
        request,
        "models.html",
        status,
        models=[r for r in rows if not r["alias_of"]],
        aliases=[r for r in rows if r["alias_of"]],
        providers=PROVIDERS,
        notice=notice,
        error=error,
    )


@router.get(BASE + "/models", response_model=None)
async def show_models(request: Request, done: str | None = None) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    notices = {"price": "Price saved.", "alias": "Alias saved."}
    return await models_page(request, notice=notices.get(done or ""))


async def save_catalog(
    request: Request,
    work: Callable[[AsyncSession, dict[str, str]], Awaitable[None]],
    done: str,
) -> Response:
    """Apply a catalog edit from a form, then reload the catalog and show the models page."""
    if (denied := await gate(request)) is not None:
        return denied
    state = get_state(request)
    try:
        form = await read_form(request)
        async with state.sessions() as session:
            await work(session, form)
    except ServiceError as exc:
        return await models_page(request, error=exc.message, status=exc.status)
    await state.catalog.reload()
    return RedirectResponse(f"{BASE}/models?done={done}", 303)


@router.post(BASE + "/models/price", response_model=None)
async def set_price(request: Request) -> Response:
    async def work(session: AsyncSession, form: dict[str, str]) -> None:
        await catalog_admin.set_price(
            session,
            form.get("provider", ""),
            form.get("model", ""),
            input=form.get("input", ""),
            output=form.get("output", ""),
            cached_input=form.get("cached_input") or None,
        )

    return await save_catalog(request, work, "price")


@router.post(BASE + "/models/alias", response_model=None)
async def set_alias(request: Request) -> Response:
    async def work(session: AsyncSession, form: dict[str, str]) -> None:
        await catalog_admin.set_alias(
            session, form.get("provider", ""), form.get("alias", ""), form.get("target", "")
        )

    return await save_catalog(request, work, "alias")
