"""The rows that usage totals are summed over: whole days from their daily totals, the rest
from the request rows.

The days before the retention job's mark (`api_retention.rolled_until`) have
their totals in `api_usage_daily`: a window's whole days among them are read
there (a few rows a day, however many requests it had), everything else of
the window from `api_requests`. Request rows before the pruning mark
(`pruned_until`) are never read: those days count by their totals only, which
are whole days, so a window that starts or ends inside a pruned day leaves
that day out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Subquery,
    and_,
    false,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from ai_service import retention
from ai_service.storage.models import ApiRequest, ApiUsageDaily

DAY = dt.timedelta(days=1)


def _ceil_day(moment: dt.datetime) -> dt.date:
    day = moment.date()
    return day if moment == retention.midnight(day) else day + DAY


def day_text(column: Any, dialect: str, *, is_date: bool = False) -> ColumnElement[Any]:
    """A timestamp's UTC day (or a date) as 'YYYY-MM-DD', in the database's own dialect."""
    if dialect == "postgresql":
        return func.to_char(column if is_date else func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


async def usage_rows(
    conn: AsyncConnection,
    where: Any,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> Subquery:
    """The usage rows of a window [since, until) (None: open), as a subquery with columns
    day, user_id, key_id, provider, model, status, requests, prompt_tokens,
    completion_tokens, cached_tokens, cost, uncollected. `where(columns)` returns the
    filter's conditions on either source's columns."""
    mark = await retention.horizon(conn)
    dialect = conn.dialect.name
    # the request rows are read from `low` on (none of a pruned day)
    low = since
    if mark.pruned_until is not None:
        pruned = retention.midnight(mark.pruned_until)
        low = pruned if low is None else max(low, pruned)
    spans: list[tuple[dt.datetime | None, dt.datetime | None]] = [(low, until)]
    parts = []
    if mark.rolled_until is not None:
        first = None if since is None else _ceil_day(since)
        end = mark.rolled_until if until is None else min(until.date(), mark.rolled_until)
        if first is None or first < end:
            parts.append(_daily_rows(where, dialect, first, end))
            # the whole days read from their totals are left out of the request rows: what
            # is left is the part of a day the window starts in, and what follows `end`
            after = retention.midnight(end)
            spans = [(after if low is None else max(low, after), until)]
            if first is not None:
                spans.append((low, retention.midnight(first)))
    # each span as a plain range of times, which a time index finds (empty ones dropped)
    ranges = [
        and_(*_range(start, stop))
        for start, stop in spans
        if start is None or stop is None or start < stop
    ]
    if ranges:
        parts.insert(0, _request_rows(where, dialect, or_(*ranges)))
    if not parts:  # nothing can match: the request rows of an empty range
        parts.append(_request_rows(where, dialect, false()))
    if len(parts) == 1:
        return parts[0].subquery("usage")
    return union_all(*parts).subquery("usage")


def _range(start: dt.datetime | None, stop: dt.datetime | None) -> list[ColumnElement[bool]]:
    found = []
    if start is not None:
        found.append(ApiRequest.created_at >= start)
    if stop is not None:
        found.append(ApiRequest.created_at < stop)
    return found or [true()]


def _request_rows(where: Any, dialect: str, when: ColumnElement[bool]) -> Select[Any]:
    raw = ApiRequest
    return select(
        day_text(raw.created_at, dialect).label("day"),
        raw.user_id,
        raw.key_id,
        raw.provider,
        raw.model,
        raw.status,
        literal(1).label("requests"),
        raw.prompt_tokens,
        raw.completion_tokens,
        raw.cached_tokens,
        raw.cost,
        raw.uncollected,
    ).where(*where(raw), when)


def _daily_rows(where: Any, dialect: str, first: dt.date | None, end: dt.date) -> Select[Any]:
    daily = ApiUsageDaily
    conditions = [*where(daily), daily.day < end]
    if first is not None:
        conditions.append(daily.day >= first)
    return select(
        day_text(daily.day, dialect, is_date=True).label("day"),
        daily.user_id,
        daily.key_id,
        daily.provider,
        daily.model,
        daily.status,
        daily.requests,
        daily.prompt_tokens,
        daily.completion_tokens,
        daily.cached_tokens,
        daily.cost,
        daily.uncollected,
    ).where(*conditions)
