"""Budgets: the operations the CLI, the admin API, the dashboard and the caller's own
`/ai/account` share (the rule they enforce is `billing.budgets`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.billing import budgets
from ai_service.billing.budgets import PERIODS, Budget, Standing
from ai_service.billing.ledger import utcnow
from ai_service.billing.money import usd_str
from ai_service.errors import InvalidRequestError, NotFoundError
from ai_service.services.accounts import get_user
from ai_service.storage.models import ApiBudget, ApiKey, ApiUser


def check_period(period: str, rolling: bool) -> None:
    """Raises `InvalidRequestError` for a period that is not one."""
    if period not in PERIODS:
        raise InvalidRequestError(
            f"Unknown period {period!r}: one of {', '.join(PERIODS)}.", param="period"
        )
    if rolling and period == "total":
        raise InvalidRequestError("A lifetime limit ('total') cannot be rolling.", param="rolling")


async def key_by_prefix(session: AsyncSession, prefix: str) -> ApiKey:
    key = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        raise NotFoundError(f"No key with prefix '{prefix}'.")
    return key


async def set_budget(
    session: AsyncSession,
    *,
    user_name: str | None = None,
    key_prefix: str | None = None,
    period: str,
    rolling: bool = False,
    limit: int,
) -> ApiBudget:
    """Set the limit (nano-USD) of a user's or a key's budget for `period`; one budget per
    scope, period and kind (calendar or rolling): setting it again changes its limit.

    Raises `InvalidRequestError` or `NotFoundError`.
    """
    check_period(period, rolling)
    if limit < 0:
        raise InvalidRequestError("A budget's limit cannot be negative.", param="limit")
    if (user_name is None) == (key_prefix is None):
        raise InvalidRequestError("A budget is on a user or on a key: name one of them.")
    if key_prefix is not None:
        key = await key_by_prefix(session, key_prefix)
        user_id, key_id = key.user_id, key.id
    else:
        assert user_name is not None
        user_id, key_id = (await get_user(session, user_name)).id, None
    budget = await session.scalar(
        select(ApiBudget).where(
            ApiBudget.user_id == user_id,
            ApiBudget.key_id.is_(None) if key_id is None else ApiBudget.key_id == key_id,
            ApiBudget.period == period,
            ApiBudget.rolling.is_(rolling),
        )
    )
    if budget is None:
        budget = ApiBudget(
            user_id=user_id, key_id=key_id, period=period, rolling=rolling, limit_nano=limit
        )
        session.add(budget)
    else:
        budget.limit_nano = limit
    await session.commit()
    await session.refresh(budget)
    return budget


async def remove_budget(session: AsyncSession, budget_id: int) -> None:
    """Raises `NotFoundError`."""
    done = await session.execute(delete(ApiBudget).where(ApiBudget.id == budget_id))
    if not done.rowcount:  # type: ignore[attr-defined]
        raise NotFoundError(f"No budget with id {budget_id}.")
    await session.commit()


async def user_budgets(
    session: AsyncSession, user_id: int, key_id: int | None = None
) -> list[tuple[Budget, str | None]]:
    """A user's budgets and its keys' (only `key_id`'s when given), with each key's prefix."""
    stmt = (
        select(ApiBudget, ApiKey.prefix)
        .outerjoin(ApiKey, ApiKey.id == ApiBudget.key_id)
        .where(ApiBudget.user_id == user_id)
        .order_by(ApiBudget.id)
    )
    if key_id is not None:
        stmt = stmt.where((ApiBudget.key_id == key_id) | ApiBudget.key_id.is_(None))
    rows = (await session.execute(stmt)).all()
    return [
        (Budget(b.id, b.key_id, b.period, b.rolling, b.limit_nano), prefix) for b, prefix in rows
    ]


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat()


def standing_view(standing: Standing, key_prefix: str | None) -> dict[str, Any]:
    """A budget as the APIs show it: its limit, what it used and what remains, when it resets."""
    budget = standing.budget
    return {
        "id": budget.id,
        "scope": budget.scope,
        "key_prefix": key_prefix,
        "period": budget.period,
        "rolling": budget.rolling,
        "limit_usd": usd_str(budget.limit),
        "used_usd": usd_str(standing.used),
        "remaining_usd": usd_str(standing.remaining),
        "nano_usd_limit": budget.limit,
        "nano_usd_used": standing.used,
        "period_start": _iso(standing.start),
        "resets_at": _iso(standing.resets_at),
    }


async def budget_views(
    session: AsyncSession, user_id: int, key_id: int | None = None
) -> list[dict[str, Any]]:
    """Each budget of a user (and of its keys, or of `key_id` only) with its standing now."""
    found = await user_budgets(session, user_id, key_id)
    conn = await session.connection()
    now = utcnow()
    return [
        standing_view((await budgets.standings(conn, (budget,), user_id, now))[0], prefix)
        for budget, prefix in found
    ]


async def budget_views_by_name(session: AsyncSession, user_name: str) -> list[dict[str, Any]]:
    user: ApiUser = await get_user(session, user_name)
    return await budget_views(session, user.id)
