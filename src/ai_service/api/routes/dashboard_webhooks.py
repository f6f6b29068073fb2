"""The dashboard's alerts page: `/ai/admin/webhooks`: the webhook events with their delivery
status (filtered by status and type), each one's body, and a retry."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from ai_service.api.deps import get_state
from ai_service.api.web import BASE, error_page, gate, read_form, render
from ai_service.errors import ServiceError
from ai_service.services import webhook_admin
from ai_service.webhooks.events import STATUSES, TYPES

router = APIRouter(include_in_schema=False)
PAGE = 50
FILTERS = ("status", "type", "user")


@router.get(BASE + "/webhooks", response_model=None)
async def webhooks_page(
    request: Request, before: int | None = None, done: str | None = None
) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    query = {name: request.query_params.get(name, "").strip() for name in FILTERS}
    page: dict[str, Any] = {"data": [], "next_before": None}
    error = None
    state = get_state(request)
    try:
        async with state.sessions() as session:
            page = await webhook_admin.events_page(
                session,
                status=query["status"] or None,
                event_type=query["type"] or None,
                user_name=query["user"] or None,
                limit=PAGE,
                before=before,
                payloads=True,
            )
        for view in page["data"]:  # the body as sent (its keys in their order)
            view["body"] = orjson.dumps(view.pop("payload")).decode()
    except ServiceError as exc:
        error = exc.message
    kept = {k: v for k, v in query.items() if v}
    older = None
    if page["next_before"] is not None:
        older = f"{BASE}/webhooks?{urlencode({**kept, 'before': page['next_before']})}"
    return render(
        request,
        "webhooks.html",
        400 if error else 200,
        events=page["data"],
        query=query,
        statuses=STATUSES,
        types=TYPES,
        older=older,
        url=state.settings.webhook_url,
        notice="Event queued for delivery." if done == "retry" else None,
        error=error,
    )


@router.post(BASE + "/webhooks/{event_id}/retry", response_model=None)
async def retry(request: Request, event_id: str) -> Response:
    if (denied := await gate(request)) is not None:
        return denied
    state = get_state(request)
    try:
        await read_form(request)
        async with state.sessions() as session:
            await webhook_admin.retry_event(session, event_id)
    except ServiceError as exc:
        return error_page(request, exc)
    if state.webhooks is not None:
        state.webhooks.wake.set()
    return RedirectResponse(f"{BASE}/webhooks?done=retry", 303)
