"""Usage queries: request logs, request detail, spend totals and daily series.

Shared by `GET /ai/account` / `GET /ai/usage` (a key holder's own rows), the
CLI, the admin API and the dashboard. Money leaves as exact decimal strings
(`cost_usd`) next to integer nano-USD (`cost_nano_usd`); days are UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypeVar

import orjson
from sqlalchemy import Select, Subquery, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from ai_service.billing.money import micro_to_usd, usd_str
from ai_service.errors import NotFoundError
from ai_service.services.usage_source import usage_rows
from ai_service.storage.models import ApiKey, ApiRequest, ApiRequestData, ApiUser

PICO_PER_USD = 10**12

MAX_ID = 2**63 - 1  # row ids are 64-bit: a larger cursor means "from the newest"
MAX_PAGE = 500
MAX_DAYS = 366
GroupBy = Literal["provider", "model"]
AnySelect = Select[*tuple[Any, ...]]
S = TypeVar("S", bound=AnySelect)


def _as_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


# the times a query may name: far enough from the calendar's ends that converting an
# offset to UTC, or a window's days of arithmetic, stays inside it
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
TIME_HELP = (
    "ISO 8601 (`2025-01-31`, `2025-01-31T14:05:00+02:00`; UTC without an offset) "
    "or Unix seconds, from 1900 to 9998"
)


def parse_time(value: object) -> dt.datetime | None:
    """A time a caller gave (text, or a datetime), in UTC; None stays None.

    ISO 8601: a date is its midnight, a time without an offset is UTC; an
    integer is Unix seconds. Raises `ValueError` for anything else, and for a
    time before `EARLIEST` or from `LATEST` on.
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            if text.isdigit() and text.isascii():
                moment = dt.datetime.fromtimestamp(int(text), dt.UTC)
            else:
                moment = dt.datetime.fromisoformat(text)
        except (ValueError, OverflowError, OSError):
            raise ValueError(f"not a time: give {TIME_HELP}") from None
    else:
        raise ValueError(f"not a time: give {TIME_HELP}")
    try:
        moment = _as_utc(moment)
    except OverflowError:  # an offset that pushes it past year 1 or 9999
        raise ValueError(f"out of range: give {TIME_HELP}") from None
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"out of range: give {TIME_HELP}")
    return moment


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A datetime in UTC; a naive one is taken to be UTC already."""
    return None if value is None else _as_utc(value)


def today() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Filters:
    """Which request rows a query covers; every field is optional."""

    user_id: int | None = None
    provider: str | None = None
    model: str | None = None
    status: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    key_id: int | None = None

    def conditions(self, columns: Any) -> list[ColumnElement[bool]]:
        """The conditions on anything but time, on the columns of either usage source
        (`ApiRequest` or `ApiUsageDaily`: both name them alike)."""
        found: list[ColumnElement[bool]] = []
        if self.user_id is not None:
            found.append(columns.user_id == self.user_id)
        if self.key_id is not None:
            found.append(columns.key_id == self.key_id)
        if self.provider:
            found.append(columns.provider == self.provider)
        if self.model:
            found.append(columns.model == self.model)
        if self.status:
            found.append(columns.status == self.status)
        return found

    def apply(self, stmt: S) -> S:
        """`stmt` over the request rows, narrowed to these filters."""
        stmt = stmt.where(*self.conditions(ApiRequest))
        since, until = utc(self.since), utc(self.until)
        if since is not None:
            stmt = stmt.where(ApiRequest.created_at >= since)
        if until is not None:
            stmt = stmt.where(ApiRequest.created_at < until)
        return stmt

    async def rows(self, session: AsyncSession) -> Subquery:
        """The usage rows these filters cover (`usage_source.usage_rows`)."""
        conn = await session.connection()
        return await usage_rows(conn, self.conditions, utc(self.since), utc(self.until))


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else _as_utc(value).isoformat()


def price_view(detail: str | None) -> dict[str, Any] | None:
    """A row's `price_detail` for the API: the rates applied and the cost of each part (and
    of each kind of server tool use), in USD."""
    if not detail:
        return None
    try:
        data = orjson.loads(detail)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    parts = {
        kind: {
            "tokens": part.get("tokens", 0),
            "usd_per_million": str(micro_to_usd(int(part.get("rate", 0)))),
            "cost_usd": str(Decimal(int(part.get("cost_pico", 0))) / PICO_PER_USD),
        }
        for kind, part in (data.get("parts") or {}).items()
        if isinstance(part, dict)
    }
    view = {
        "source": data.get("source"),
        "priced_as": data.get("priced_as"),
        "flagged": bool(data.get("flagged")),
        "price_date": data.get("price_date"),
        "time_window": data.get("time_window"),
        "service_tier": data.get("service_tier"),
        "tier": data.get("tier"),
        "parts": parts,
        "cost_usd": usd_str(int(data.get("cost_nano", 0))),
    }
    uses = data.get("uses")
    if isinstance(uses, dict):  # server tool uses (web searches): their count and price
        view["uses"] = {
            kind: {
                "uses": part.get("uses", 0),
                "usd_per_use": str(Decimal(int(part.get("price", 0))) / PICO_PER_USD),
                "cost_usd": str(Decimal(int(part.get("cost_pico", 0))) / PICO_PER_USD),
            }
            for kind, part in uses.items()
            if isinstance(part, dict)
        }
    return view


def request_view(
    row: ApiRequest, user: str | None = None, key_prefix: str | None = None
) -> dict[str, Any]:
    return {
        "id": row.id,
        "request_id": row.request_id,
        "client_request_id": row.client_request_id,
        "surface": row.surface,
        "created_at": _iso(row.created_at),
        "user": user,
        "key_prefix": key_prefix,
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
        # the part of the cost the balance could not pay (recorded, not charged)
        "uncollected_usd": usd_str(row.uncollected),
        "uncollected_nano_usd": row.uncollected,
        "usage_estimated": row.usage_estimated,
        "default_price": row.default_price,
        "price": price_view(row.price_detail),
        "duration_ms": row.duration_ms,
        "upstream_latency_ms": row.upstream_latency_ms,
        "ttft_ms": row.ttft_ms,
        "queue_ms": row.queue_ms,
    }


def _with_names() -> Select[ApiRequest, str, str]:
    return (
        select(ApiRequest, ApiUser.name, ApiKey.prefix)
        .outerjoin(ApiUser, ApiUser.id == ApiRequest.user_id)
        .outerjoin(ApiKey, ApiKey.id == ApiRequest.key_id)
    )


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
    """One page of request rows, newest first, with a cursor (`next_before`) for the next."""
    limit = max(1, min(limit, MAX_PAGE))
    filters = Filters(user_id, provider, model, status, since, until)
    stmt = filters.apply(_with_names().order_by(ApiRequest.id.desc()).limit(limit + 1))
    if before is not None:
        before = min(before, MAX_ID)
        stmt = stmt.where(ApiRequest.id < before)
    rows = list((await session.execute(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "object": "list",
        "data": [request_view(row, user, prefix) for row, user, prefix in rows],
        "has_more": more,
        "next_before": rows[-1][0].id if more and rows else None,
    }


async def request_detail(session: AsyncSession, request_id: str) -> dict[str, Any]:
    """One request row with its stored payloads. Raises `NotFoundError`."""
    found = (
        await session.execute(_with_names().where(ApiRequest.request_id == request_id))
    ).first()
    if found is None:
        raise NotFoundError(f"No request with id '{request_id}'.")
    row, user, prefix = found
    data = await session.get(ApiRequestData, request_id)
    return {
        **request_view(row, user, prefix),
        "attempts": row.attempts,
        "attempt_log": row.attempt_log,
        "instance_id": row.instance_id,
        "finished_at": _iso(row.finished_at),
        "payload": None
        if data is None
        else {
            "request": data.request_body,
            "response": data.response_body,
            "truncated": data.truncated,
        },
    }


def _measures(u: Subquery) -> list[ColumnElement[Any]]:
    def count_status(status: str) -> ColumnElement[Any]:
        return func.coalesce(func.sum(case((u.c.status == status, u.c.requests), else_=0)), 0)

    return [
        func.coalesce(func.sum(u.c.requests), 0),
        count_status("ok"),
        count_status("error"),
        count_status("cancelled"),
        func.coalesce(func.sum(u.c.prompt_tokens), 0),
        func.coalesce(func.sum(u.c.completion_tokens), 0),
        func.coalesce(func.sum(u.c.cost), 0),
        func.coalesce(func.sum(u.c.uncollected), 0),
    ]


def _totals(values: Any) -> dict[str, Any]:
    requests, ok, errors, cancelled, prompt, completion, spent, unpaid = (
        int(v or 0) for v in values
    )
    return {
        "requests": requests,
        "ok": ok,
        "errors": errors,
        "cancelled": cancelled,
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": usd_str(spent),
        "cost_nano_usd": spent,
        "uncollected_usd": usd_str(unpaid),
        "uncollected_nano_usd": unpaid,
    }


async def summary(session: AsyncSession, filters: Filters, top: int = 10) -> dict[str, Any]:
    """Totals, and totals by provider, by model and by user (the `top` biggest spenders)."""
    u = await filters.rows(session)
    measures = _measures(u)
    spent = func.coalesce(func.sum(u.c.cost), 0)
    total = (await session.execute(select(*measures))).one()
    by_provider = await session.execute(
        select(u.c.provider, *measures).group_by(u.c.provider).order_by(u.c.provider)
    )
    by_model = await session.execute(
        select(u.c.provider, u.c.model, *measures)
        .group_by(u.c.provider, u.c.model)
        .order_by(spent.desc(), u.c.model)
    )
    by_user = await session.execute(
        select(ApiUser.name, *measures)
        .join(ApiUser, ApiUser.id == u.c.user_id)
        .group_by(ApiUser.name)
        .order_by(spent.desc(), ApiUser.name)
        .limit(top)
    )
    return {
        "since": _iso(filters.since),
        "until": _iso(filters.until),
        "totals": _totals(total),
        "by_provider": [{"provider": r[0], **_totals(r[1:])} for r in by_provider],
        "by_model": [{"provider": r[0], "model": r[1], **_totals(r[2:])} for r in by_model],
        "top_users": [{"user": r[0], **_totals(r[1:])} for r in by_user],
    }


def day_range(since: dt.datetime, until: dt.datetime) -> list[str]:
    """Every UTC day from `since` up to (not including) `until`."""
    first = _as_utc(since).date()
    last = (_as_utc(until) - dt.timedelta(microseconds=1)).date()
    count = min((last - first).days + 1, MAX_DAYS)
    return [(first + dt.timedelta(days=n)).isoformat() for n in range(max(count, 0))]


def window(
    days: int, since: dt.datetime | None, until: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    """The time range of a daily query: explicit bounds, or the last `days` UTC days."""
    end = utc(until) or today() + dt.timedelta(days=1)
    start = utc(since) or end - dt.timedelta(days=max(1, min(days, MAX_DAYS)))
    return start, end


async def daily(
    session: AsyncSession, filters: Filters, group_by: GroupBy | None = None
) -> dict[str, Any]:
    """Requests, errors, tokens and spend per UTC day (and per provider or model).

    `filters.since` and `filters.until` must be set (see `window()`); without
    `group_by` every day of the range is present, with zeros where nothing ran.
    """
    if filters.since is None or filters.until is None:
        raise ValueError("daily() needs filters.since and filters.until (see window())")
    u = await filters.rows(session)
    keys: list[Any] = [u.c.day]
    if group_by == "provider":
        keys.append(u.c.provider)
    elif group_by == "model":
        keys += [u.c.provider, u.c.model]
    stmt = select(*keys, *_measures(u)).group_by(*keys).order_by(*keys)
    rows = (await session.execute(stmt)).all()
    width = len(keys)
    data: list[dict[str, Any]] = []
    for row in rows:
        entry: dict[str, Any] = {"day": str(row[0])[:10]}  # a string on both dialects
        if group_by == "provider":
            entry["provider"] = row[1]
        elif group_by == "model":
            entry["provider"], entry["model"] = row[1], row[2]
        data.append({**entry, **_totals(row[width:])})
    if group_by is None:
        present = {entry["day"]: entry for entry in data}
        data = [
            present.get(d) or {"day": d, **_totals((0,) * 8)}
            for d in day_range(filters.since, filters.until)
        ]
    return {
        "object": "list",
        "since": _iso(filters.since),
        "until": _iso(filters.until),
        "group_by": group_by,
        "data": data,
    }


async def spend_since(
    session: AsyncSession, user_id: int, since: dt.datetime | None, key_id: int | None = None
) -> int:
    """What a user (or one of its keys) spent since `since` (ever, with None), nano-USD."""
    u = await Filters(user_id, since=since, key_id=key_id).rows(session)
    return int(await session.scalar(select(func.coalesce(func.sum(u.c.cost), 0))) or 0)


async def count_since(
    session: AsyncSession, user_id: int, since: dt.datetime | None, key_id: int | None = None
) -> int:
    """How many requests a user (or one of its keys) sent since `since`."""
    u = await Filters(user_id, since=since, key_id=key_id).rows(session)
    return int(await session.scalar(select(func.coalesce(func.sum(u.c.requests), 0))) or 0)


async def user_totals(
    session: AsyncSession, since: dt.datetime | None
) -> dict[int, dict[str, Any]]:
    """Requests and spend of every user with requests since `since`, by user id."""
    u = await Filters(since=since).rows(session)
    stmt = select(u.c.user_id, *_measures(u)).group_by(u.c.user_id)
    return {int(r[0]): _totals(r[1:]) for r in await session.execute(stmt) if r[0] is not None}


async def account(
    session: AsyncSession, user_id: int, key_prefix: str | None = None
) -> dict[str, Any]:
    """Balance, spend and request counts today / this month / in total, per-model totals."""
    user = await session.get(ApiUser, user_id)
    if user is None:
        raise NotFoundError("No such user.")
    day = today()
    month = day.replace(day=1)
    u = await Filters(user_id).rows(session)
    per_model = (
        await session.execute(
            select(
                u.c.provider,
                u.c.model,
                func.coalesce(func.sum(u.c.requests), 0),
                func.coalesce(func.sum(u.c.prompt_tokens), 0),
                func.coalesce(func.sum(u.c.completion_tokens), 0),
                func.coalesce(func.sum(u.c.cached_tokens), 0),
                func.coalesce(func.sum(u.c.cost), 0),
            )
            .group_by(u.c.provider, u.c.model)
            .order_by(u.c.provider, u.c.model)
        )
    ).all()
    return {
        "object": "account",
        "user": user.name,
        "key_prefix": key_prefix,
        "disabled": user.disabled,
        "usd_available": usd_str(user.usd_available),
        "usd_reserved": usd_str(user.usd_reserved),
        "nano_usd_available": user.usd_available,
        "spend": {
            "today_usd": usd_str(await spend_since(session, user_id, day)),
            "month_usd": usd_str(await spend_since(session, user_id, month)),
            "total_usd": usd_str(await spend_since(session, user_id, None)),
        },
        "requests": {
            "today": await count_since(session, user_id, day),
            "month": await count_since(session, user_id, month),
            "total": await count_since(session, user_id, None),
        },
        "models": [
            {
                "provider": provider,
                "model": model,
                "requests": int(count),
                "prompt_tokens": int(prompt),
                "completion_tokens": int(completion),
                "cached_tokens": int(cached),
                "cost_usd": usd_str(int(spent)),
            }
            for provider, model, count, prompt, completion, cached, spent in per_model
        ],
    }
