"""Usage queries: a user's request log and spend totals."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.billing.money import usd_str
from ai_service.storage.models import ApiRequest, ApiUser

MAX_PAGE = 500


def request_view(row: ApiRequest) -> dict[str, Any]:
    return {
        "id": row.id,
        "request_id": row.request_id,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "provider": row.provider,
        "requested_model": row.requested_model,
        "model": row.model,
        "stream": row.stream,
        "status": row.status,
        "http_status": row.http_status,
        "error": row.error,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cached_tokens": row.cached_tokens,
        "cache_write_tokens": row.cache_write_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "cost_usd": usd_str(row.cost),
        "cost_nano_usd": row.cost,
        "usage_estimated": row.usage_estimated,
        "default_price": row.default_price,
        "duration_ms": row.duration_ms,
        "upstream_latency_ms": row.upstream_latency_ms,
        "ttft_ms": row.ttft_ms,
    }


async def requests_page(
    session: AsyncSession,
    *,
    user_id: int | None = None,
    limit: int = 50,
    before: int | None = None,
    provider: str | None = None,
    model: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> dict[str, Any]:
    """One page of request rows, newest first, with a cursor for the next page."""
    limit = max(1, min(limit, MAX_PAGE))
    stmt = select(ApiRequest).order_by(ApiRequest.id.desc()).limit(limit + 1)
    if user_id is not None:
        stmt = stmt.where(ApiRequest.user_id == user_id)
    if before is not None:
        stmt = stmt.where(ApiRequest.id < before)
    if provider:
        stmt = stmt.where(ApiRequest.provider == provider)
    if model:
        stmt = stmt.where(ApiRequest.model == model)
    if status:
        stmt = stmt.where(ApiRequest.status == status)
    if since is not None:
        stmt = stmt.where(ApiRequest.created_at >= since)
    if until is not None:
        stmt = stmt.where(ApiRequest.created_at < until)
    rows = list((await session.scalars(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "object": "list",
        "data": [request_view(r) for r in rows],
        "has_more": more,
        "next_before": rows[-1].id if more and rows else None,
    }


async def spend_since(session: AsyncSession, user_id: int, since: dt.datetime | None) -> int:
    stmt = select(func.coalesce(func.sum(ApiRequest.cost), 0)).where(ApiRequest.user_id == user_id)
    if since is not None:
        stmt = stmt.where(ApiRequest.created_at >= since)
    return int(await session.scalar(stmt) or 0)


async def account(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """Balance, spend today / this month / in total, and per-model totals of a user."""
    user = await session.get(ApiUser, user_id)
    assert user is not None
    now = dt.datetime.now(dt.UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    per_model = (
        await session.execute(
            select(
                ApiRequest.provider,
                ApiRequest.model,
                func.count(),
                func.coalesce(func.sum(ApiRequest.prompt_tokens), 0),
                func.coalesce(func.sum(ApiRequest.completion_tokens), 0),
                func.coalesce(func.sum(ApiRequest.cost), 0),
            )
            .where(ApiRequest.user_id == user_id)
            .group_by(ApiRequest.provider, ApiRequest.model)
        )
    ).all()
    return {
        "user": user.name,
        "usd_available": usd_str(user.usd_available),
        "usd_reserved": usd_str(user.usd_reserved),
        "nano_usd_available": user.usd_available,
        "spend": {
            "today_usd": usd_str(await spend_since(session, user_id, day)),
            "month_usd": usd_str(await spend_since(session, user_id, month)),
            "total_usd": usd_str(await spend_since(session, user_id, None)),
        },
        "models": [
            {
                "provider": provider,
                "model": model,
                "requests": count,
                "prompt_tokens": int(prompt),
                "completion_tokens": int(completion),
                "cost_usd": usd_str(int(spent)),
            }
            for provider, model, count, prompt, completion, spent in per_model
        ],
    }
