"""Admin API, alerts: `/ai/admin/api/webhooks/events...` and `/ai/admin/api/users/{name}/alerts`.

The webhook events with their delivery status (newest first, paged), one
event with the body it is sent with, a retry (a failed event, or a delivered
one sent again), and a user's own `balance.low` threshold.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from ai_service.api.admin_auth import AdminDep
from ai_service.api.deps import StateDep
from ai_service.api.responses import json_response
from ai_service.api.routes.admin import PREFIX, USD_HELP, parse_usd
from ai_service.services import webhook_admin

router = APIRouter(prefix=PREFIX, tags=["admin: alerts"], dependencies=[AdminDep])


class Alerts(BaseModel):
    low_balance_usd: str | None = Field(
        max_length=32,
        description=f"{USD_HELP}: `balance.low` fires below it; null = the default "
        '(AI_SERVICE_LOW_BALANCE_ALERT_USD), "0" = never',
        examples=["5.00"],
    )


@router.get("/webhooks/events", summary="Webhook events with their delivery status")
async def list_events(
    state: StateDep,
    status: str | None = None,
    type: str | None = None,
    user: str | None = None,
    limit: Annotated[int, Query(ge=1, le=webhook_admin.MAX_PAGE)] = 50,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    async with state.sessions() as session:
        page = await webhook_admin.events_page(
            session, status=status, event_type=type, user_name=user, limit=limit, before=before
        )
    return json_response(page)


@router.get("/webhooks/events/{event_id}", summary="One webhook event and the body it is sent with")
async def show_event(event_id: str, state: StateDep) -> Response:
    async with state.sessions() as session:
        return json_response(await webhook_admin.event_detail(session, event_id))


@router.post(
    "/webhooks/events/{event_id}/retry",
    summary="Deliver a webhook event again now (a failed one, or one the receiver lost)",
)
async def retry_event(event_id: str, state: StateDep) -> Response:
    async with state.sessions() as session:
        view = await webhook_admin.retry_event(session, event_id)
    if state.webhooks is not None:
        state.webhooks.wake.set()
    return json_response(view)


@router.put("/users/{name}/alerts", summary="Set a user's own balance.low threshold")
async def set_alerts(name: str, body: Alerts, state: StateDep) -> Response:
    threshold = None
    if body.low_balance_usd is not None:
        threshold = parse_usd(body.low_balance_usd, "low_balance_usd")
    default = state.settings.low_balance_alert_nano
    async with state.sessions() as session:
        view = await webhook_admin.set_low_balance(session, name, threshold, default)
    return json_response(view)
