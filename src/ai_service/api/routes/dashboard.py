"""The dashboard's sign-in and overview: `/ai/admin/`, `/ai/admin/login`, `/ai/admin/logout`.

The overview shows spend and requests per UTC day, by provider and by model
(charts drawn by `static/dashboard.js` from JSON embedded in the page), the
totals with the error rate, and the top users of the period.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from ai_service.api.admin_auth import (
    COOKIE,
    COOKIE_PATH,
    SESSION_SECONDS,
    configured_key,
    session_of,
    session_token,
)
from ai_service.api.deps import get_state
from ai_service.api.web import (
    BASE,
    chart_json,
    error_page,
    gate,
    read_form,
    render,
    safe_next,
)
from ai_service.auth import same_secret
from ai_service.billing.money import nano_to_usd
from ai_service.errors import ServiceError
from ai_service.services import sessions, usage

router = APIRouter(include_in_schema=False)
PERIODS = (7, 14, 30, 90)
TOP_MODELS = 6


@router.get(BASE, response_model=None)
async def bare() -> Response:
    return RedirectResponse(BASE + "/", 308)


@router.get(BASE + "/login", response_model=None)
async def login_form(request: Request, next: str | None = None) -> Response:
    if configured_key(request) is None:
        return await gate(request) or Response(status_code=404)
    return render(request, "login.html", next=safe_next(next), failed=False, public=True)


@router.post(BASE + "/login", response_model=None)
async def login(request: Request) -> Response:
    key = configured_key(request)
    if key is None:
        return await gate(request) or Response(status_code=404)
    try:
        form = await read_form(request)
    except ServiceError as exc:
        return error_page(request, exc)
    target = safe_next(form.get("next"))
    if not same_secret(form.get("key", ""), key):
        return render(request, "login.html", 401, next=target, failed=True, public=True)
    token, session_id = session_token(key)
    await sessions.open_session(get_state(request).engine, session_id, SESSION_SECONDS)
    response = RedirectResponse(target, 303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post(BASE + "/logout", response_model=None)
async def logout(request: Request) -> Response:
    """End the session on the server (a copy of its cookie stops working too), then the cookie."""
    key = configured_key(request)
    session_id = None if key is None else session_of(key, request.cookies.get(COOKIE))
    if session_id is not None:
        await sessions.close_session(get_state(request).engine, session_id)
    response = RedirectResponse(BASE + "/login", 303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


def _usd(nano: int) -> float:
    """USD as a float for chart drawing only (tables show exact amounts)."""
    return float(nano_to_usd(nano))


def series(rows: list[dict[str, Any]], days: list[str], key: str, top: int) -> dict[str, Any]:
    """Chart datasets of spend and requests per day for each `key` (the biggest `top`)."""
    spend: dict[str, int] = defaultdict(int)
    for row in rows:
        spend[row[key]] += row["cost_nano_usd"]
    ranked = sorted(spend, key=lambda name: (-spend[name], name))
    keep = set(ranked[:top])
    index = {day: n for n, day in enumerate(days)}
    cost: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    count: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    for row in rows:
        name = row[key] if row[key] in keep else "other"
        at = index.get(row["day"])
        if at is not None:
            cost[name][at] += row["cost_nano_usd"]
            count[name][at] += row["requests"]
    names = [n for n in ranked if n in keep] + (["other"] if len(ranked) > top else [])
    return {
        "labels": days,
        "spend": [{"label": n, "data": [_usd(v) for v in cost[n]]} for n in names],
        "requests": [{"label": n, "data": count[n]} for n in names],
    }


@router.get(BASE + "/", response_model=None)
async def overview(request: Request, days: int = 14) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    days = days if days in PERIODS else 14
    since, until = usage.window(days, None, None)
    filters = usage.Filters(since=since, until=until)
    async with get_state(request).sessions() as session:
        totals = await usage.summary(session, filters, top=10)
        daily = await usage.daily(session, filters)
        by_provider = await usage.daily(session, filters, "provider")
        by_model = await usage.daily(session, filters, "model")
    labels = [row["day"] for row in daily["data"]]
    charts = {
        "provider": series(by_provider["data"], labels, "provider", TOP_MODELS),
        "model": series(by_model["data"], labels, "model", TOP_MODELS),
        "status": {
            "labels": labels,
            "ok": [row["ok"] for row in daily["data"]],
            "error": [row["errors"] for row in daily["data"]],
            "cancelled": [row["cancelled"] for row in daily["data"]],
        },
    }
    return render(
        request,
        "overview.html",
        days=days,
        periods=PERIODS,
        summary=totals,
        charts=chart_json(charts),
        first_day=labels[0] if labels else "",
        last_day=labels[-1] if labels else "",
    )
