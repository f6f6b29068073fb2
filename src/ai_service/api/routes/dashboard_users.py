"""The dashboard's users pages: `/ai/admin/users` and `/ai/admin/users/{name}`.

Balances, spend of the last 30 days, top-ups, keys (create, shown once;
allowed models and expiry; revoke), budgets (set, remove), disable / enable.
Every change goes through `services.accounts` and `services.budget_admin`, as
the CLI's and the admin API's do.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from ai_service.api.deps import get_state
from ai_service.api.routes.admin import parse_usd
from ai_service.api.web import BASE, error_page, gate, read_form, render
from ai_service.errors import NotFoundError, ServiceError
from ai_service.services import accounts, budget_admin, usage, webhook_admin
from ai_service.services.accounts import NewKey

router = APIRouter(include_in_schema=False)
RECENT = 20
SEPARATORS = re.compile(r"[\s,]+")


def form_policy(form: dict[str, str]) -> accounts.Policy:
    """A key's policy from a form: `allowed` patterns separated by spaces, commas or lines
    (none: every model), `expires` a time (none: never)."""
    patterns = [p for p in SEPARATORS.split(form.get("allowed", "")) if p]
    return accounts.Policy(allowed=patterns or None, expires=form.get("expires") or None)


def user_url(name: str, **query: str) -> str:
    url = f"{BASE}/users/{quote(name, safe='')}"
    return f"{url}?{urlencode(query)}" if query else url


async def users_context(request: Request) -> dict[str, Any]:
    since = usage.today() - dt.timedelta(days=29)
    async with get_state(request).sessions() as session:
        users = await accounts.list_users(session)
        totals = await usage.user_totals(session, since)
        keys = await accounts.list_keys(session)
    active: dict[str, int] = {}
    for key in keys:
        if not key["revoked"]:
            active[key["user"]] = active.get(key["user"], 0) + 1
    rows = [
        {
            **accounts.user_view(u),
            "totals": totals.get(u.id),
            "active_keys": active.get(u.name, 0),
        }
        for u in users
    ]
    return {"users": rows}


@router.get(BASE + "/users", response_model=None)
async def users_page(request: Request) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    return render(request, "users.html", **(await users_context(request)), form={}, error=None)


@router.post(BASE + "/users", response_model=None)
async def create_user(request: Request) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    form: dict[str, str] = {}
    try:
        form = await read_form(request)
        amount = parse_usd(form.get("balance") or "0", "balance")
        async with get_state(request).sessions() as session:
            key = await accounts.create_user(session, form.get("name", ""), amount)
    except ServiceError as exc:
        context = await users_context(request)
        return render(request, "users.html", exc.status, **context, form=form, error=exc.message)
    return await user_page(request, key.user, new_key=key, notice="User created.")


async def user_page(
    request: Request,
    name: str,
    *,
    new_key: NewKey | None = None,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    try:
        async with get_state(request).sessions() as session:
            user = await accounts.get_user(session, name)
            account = await usage.account(session, user.id)
            keys = await accounts.list_keys(session, name)
            recent = await usage.requests_page(session, user_id=user.id, limit=RECENT)
            budgets = await budget_admin.budget_views(session, user.id)
    except ServiceError as exc:
        return error_page(request, exc)
    alerts = webhook_admin.alert_view(user, get_state(request).settings.low_balance_alert_nano)
    return render(
        request,
        "user.html",
        status_code,
        user=accounts.user_view(user),
        account=account,
        keys=keys,
        recent=recent["data"],
        budgets=budgets,
        alerts=alerts,
        new_key=new_key,
        notice=notice,
        error=error,
    )


@router.get(BASE + "/users/{name}", response_model=None)
async def show_user(request: Request, name: str, done: str | None = None) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    notices = {
        "topup": "Balance topped up.",
        "revoked": "Key revoked.",
        "key": "Key updated.",
        "disabled": "User disabled: every key stops working.",
        "enabled": "User enabled.",
        "budget": "Budget set.",
        "unbudgeted": "Budget removed.",
        "alerts": "Low-balance alert set.",
    }
    return await user_page(request, name, notice=notices.get(done or ""))


@router.post(BASE + "/users/{name}/topup", response_model=None)
async def topup(request: Request, name: str) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    try:
        form = await read_form(request)
        amount = parse_usd(form.get("amount", ""), "amount")
        async with get_state(request).sessions() as session:
            await accounts.topup(session, name, amount, form.get("note") or None)
    except ServiceError as exc:
        return await user_page(request, name, error=exc.message, status_code=exc.status)
    return RedirectResponse(user_url(name, done="topup"), 303)


@router.post(BASE + "/users/{name}/keys", response_model=None)
async def create_key(request: Request, name: str) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    try:
        form = await read_form(request)
        async with get_state(request).sessions() as session:
            key = await accounts.create_key(
                session, name, form.get("name") or None, form_policy(form)
            )
    except ServiceError as exc:
        return await user_page(request, name, error=exc.message, status_code=exc.status)
    return await user_page(request, name, new_key=key, notice="Key created.")


@router.post(BASE + "/users/{name}/keys/{prefix}/policy", response_model=None)
async def update_key(request: Request, name: str, prefix: str) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    state = get_state(request)
    try:
        form = await read_form(request)
        async with state.sessions() as session:
            await accounts.update_key(session, prefix, form_policy(form))
    except ServiceError as exc:
        return await user_page(request, name, error=exc.message, status_code=exc.status)
    state.keys.forget()
    return RedirectResponse(user_url(name, done="key"), 303)


@router.post(BASE + "/users/{name}/keys/{prefix}/revoke", response_model=None)
async def revoke_key(request: Request, name: str, prefix: str) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    state = get_state(request)
    try:
        await read_form(request)
        async with state.sessions() as session:
            await accounts.revoke_key(session, prefix)
    except ServiceError as exc:
        return await user_page(request, name, error=exc.message, status_code=exc.status)
    state.keys.forget()
    return RedirectResponse(user_url(name, done="revoked"), 303)


@router.post(BASE + "/users/{name}/budgets", response_model=None)
async def set_budget(request: Request, name: str) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    state = get_state(request)
    try:
        form = await read_form(request)
        limit = parse_usd(form.get("limit", ""), "limit")
        scope = form.get("scope") or "user"
        async with state.sessions() as session:
            user = await accounts.get_user(session, name)
            key_prefix = None if scope == "user" else scope
            if key_prefix is not None:
                key = await budget_admin.key_by_prefix(session, key_prefix)
                if key.user_id != user.id:
                    raise NotFoundError(f"{name} has no key with prefix '{key_prefix}'.")
            await budget_admin.set_budget(
                session,
                user_name=None if key_prefix else name,
                key_prefix=key_prefix,
                period=form.get("period", ""),
                rolling=form.get("rolling") == "1",
                limit=limit,
            )
    except ServiceError as exc:
        return await user_page(request, name, error=exc.message, status_code=exc.status)
    state.keys.forget()
    return RedirectResponse(user_url(name, done="budget"), 303)


@router.post(BASE + "/users/{name}/budgets/{budget_id}/remove", response_model=None)
async def remove_budget(request: Request, name: str, budget_id: int) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    state = get_state(request)
    try:
        await read_form(request)
        async with state.sessions() as session:
            user = await accounts.get_user(session, name)
            owned = {b.id for b, _ in await budget_admin.user_budgets(session, user.id)}
            if budget_id not in owned:
                raise NotFoundError(f"{name} has no budget {budget_id}.")
            await budget_admin.remove_budget(session, budget_id)
    except ServiceError as exc:
        return await user_page(request, name, error=exc.message, status_code=exc.status)
    state.keys.forget()
    return RedirectResponse(user_url(name, done="unbudgeted"), 303)


@router.post(BASE + "/users/{name}/alerts", response_model=None)
async def set_alerts(request: Request, name: str) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    state = get_state(request)
    try:
        form = await read_form(request)
        text = form.get("low_balance_usd", "").strip()
        threshold = parse_usd(text, "low_balance_usd") if text else None
        async with state.sessions() as session:
            await webhook_admin.set_low_balance(
                session, name, threshold, state.settings.low_balance_alert_nano
            )
    except ServiceError as exc:
        return await user_page(request, name, error=exc.message, status_code=exc.status)
    return RedirectResponse(user_url(name, done="alerts"), 303)


@router.post(BASE + "/users/{name}/{action}", response_model=None)
async def set_disabled(request: Request, name: str, action: str) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    if action not in ("disable", "enable"):
        return Response(status_code=404)
    state = get_state(request)
    try:
        await read_form(request)
        async with state.sessions() as session:
            await accounts.set_disabled(session, name, action == "disable")
    except ServiceError as exc:
        return await user_page(request, name, error=exc.message, status_code=exc.status)
    state.keys.forget()
    return RedirectResponse(user_url(name, done=f"{action}d"), 303)
