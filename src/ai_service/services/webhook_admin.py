"""Alerts for the operator: the webhook events with their delivery status, a retry, and a
user's `balance.low` threshold; shared by the CLI, the admin API and the dashboard."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.billing.ledger import utcnow
from ai_service.billing.money import usd_str
from ai_service.errors import InvalidRequestError, NotFoundError
from ai_service.services.accounts import get_user
from ai_service.storage.models import ApiUser, ApiWebhookEvent
from ai_service.webhooks import events
from ai_service.webhooks.events import STATUSES, TYPES

MAX_PAGE = 200


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else events.iso(moment)


def summary(event_type: str, data: dict[str, Any]) -> str:
    """One line about an event: `key ais-AbCd daily budget at 80% ($4.1 of $5.0)`."""
    if event_type == "balance.low":
        return f"balance ${data['balance_usd']} below ${data['threshold_usd']}"
    if event_type.startswith("credential."):
        state = event_type.removeprefix("credential.")
        return f"{data['provider']} credential {data['credential']} {state}: {data['reason']}"
    budget = data["budget"]
    scope = f"key {budget['key_prefix']}" if budget["scope"] == "key" else "user"
    period = ("rolling " if budget["rolling"] else "") + budget["period"]
    refused = ", a request refused" if data.get("refused") else ""
    return (
        f"{scope} {period} budget at {data['threshold']}% "
        f"(${budget['used_usd']} of ${budget['limit_usd']}{refused})"
    )


def event_view(row: ApiWebhookEvent, user: str | None, payload: bool = False) -> dict[str, Any]:
    """An event as the APIs show it: what it is about, how its delivery stands."""
    body = orjson.loads(row.payload)
    view: dict[str, Any] = {
        "id": row.event_id,
        "type": row.type,
        "user": user,
        "summary": summary(row.type, body["data"]),
        "status": row.status,
        "attempts": row.attempts,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "created_at": _iso(row.created_at),
        "next_attempt_at": _iso(row.next_attempt_at) if row.status == "pending" else None,
        "delivered_at": _iso(row.delivered_at),
    }
    if payload:
        view["payload"] = body
    return view


def _check(value: str | None, allowed: tuple[str, ...], param: str) -> None:
    if value is not None and value not in allowed:
        raise InvalidRequestError(
            f"Unknown {param} {value!r}: one of {', '.join(allowed)}.", param=param
        )


async def events_page(
    session: AsyncSession,
    *,
    status: str | None = None,
    event_type: str | None = None,
    user_name: str | None = None,
    limit: int = 50,
    before: int | None = None,
    payloads: bool = False,
) -> dict[str, Any]:
    """One page of events, newest first, with a cursor (`next_before`) for the next (and
    each event's body with `payloads`).

    Raises `InvalidRequestError` for an unknown status or type, `NotFoundError` for a user.
    """
    _check(status, STATUSES, "status")
    _check(event_type, TYPES, "type")
    limit = max(1, min(limit, MAX_PAGE))
    stmt = (
        select(ApiWebhookEvent, ApiUser.name)
        .outerjoin(ApiUser, ApiUser.id == ApiWebhookEvent.user_id)
        .order_by(ApiWebhookEvent.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        stmt = stmt.where(ApiWebhookEvent.status == status)
    if event_type is not None:
        stmt = stmt.where(ApiWebhookEvent.type == event_type)
    if user_name is not None:
        stmt = stmt.where(ApiWebhookEvent.user_id == (await get_user(session, user_name)).id)
    if before is not None:
        stmt = stmt.where(ApiWebhookEvent.id < min(before, 2**62))
    rows = list((await session.execute(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "object": "list",
        "data": [event_view(row, user, payloads) for row, user in rows],
        "has_more": more,
        "next_before": rows[-1][0].id if more else None,
    }


async def event_detail(session: AsyncSession, event_id: str) -> dict[str, Any]:
    """One event with the body it is sent with. Raises `NotFoundError`."""
    found = (
        await session.execute(
            select(ApiWebhookEvent, ApiUser.name)
            .outerjoin(ApiUser, ApiUser.id == ApiWebhookEvent.user_id)
            .where(ApiWebhookEvent.event_id == event_id)
        )
    ).first()
    if found is None:
        raise NotFoundError(f"No webhook event with id '{event_id}'.")
    return event_view(found[0], found[1], payload=True)


async def retry_event(session: AsyncSession, event_id: str) -> dict[str, Any]:
    """Deliver an event again, now, with a fresh count of attempts (a failed one, or one
    delivered that the receiver lost). Raises `NotFoundError`."""
    if not await events.retry(await session.connection(), event_id, utcnow()):
        raise NotFoundError(f"No webhook event with id '{event_id}'.")
    await session.commit()
    return await event_detail(session, event_id)


def alert_view(user: ApiUser, default: int | None) -> dict[str, Any]:
    own = user.low_balance_nano
    applied = default if own is None else own
    return {
        "user": user.name,
        "low_balance_usd": None if own is None else usd_str(own),
        "default_low_balance_usd": None if default is None else usd_str(default),
        "applies_usd": None if not applied else usd_str(applied),
    }


async def set_low_balance(
    session: AsyncSession, user_name: str, threshold: int | None, default: int | None
) -> dict[str, Any]:
    """Set a user's own `balance.low` threshold (nano-USD; None: the default, 0: none).

    Raises `NotFoundError`, or `InvalidRequestError` for a negative threshold.
    """
    if threshold is not None and threshold < 0:
        raise InvalidRequestError("A threshold cannot be negative.", param="low_balance_usd")
    user = await get_user(session, user_name)
    user.low_balance_nano = threshold
    await session.commit()
    return alert_view(user, default)
