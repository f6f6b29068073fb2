"""The pools as the operators see them (admin API, dashboard), and putting a credential back.

A credential is shown by its label, base URL, weight and limits, its state
(`in service`, `rate limited`, `breaker open`, `disabled`), its breaker, the
headroom this instance knows and its counts; never its key.
"""

from __future__ import annotations

import time
from typing import Any

from ai_service.errors import NotFoundError
from ai_service.pools import Member, Pool, Pools


def status(member: Member, now: float) -> str:
    if member.disabled is not None:
        return "disabled"
    if not member.breaker.allows(now):
        return "breaker open"
    if member.blocked_until > now:
        return "rate limited"
    return "in service"


def _remaining(level: float, capacity: float | None) -> int | None:
    return None if capacity is None else max(int(level), 0)


def view(pool: Pool, member: Member, now: float) -> dict[str, Any]:
    credential = member.credential
    return {
        "provider": pool.provider,
        "label": credential.label,
        "source": member.source,
        "base_url": credential.base_url,
        "weight": credential.weight,
        "rpm": credential.rpm,
        "tpm": credential.tpm,
        "status": status(member, now),
        "disabled_reason": member.disabled,
        "breaker": member.breaker.state.value,
        "blocked_for_seconds": round(max(member.blocked_until - now, 0.0), 3),
        "requests_remaining": _remaining(member.requests.current(now), member.requests.capacity),
        "tokens_remaining": _remaining(member.tokens.current(now), member.tokens.capacity),
        "headroom": round(member.headroom(now), 3),
        "requests": member.counts.get("requests", 0),
        "errors": member.counts.get("errors", 0),
        "rate_limited": member.counts.get("rate_limited", 0),
    }


def views(pools: Pools) -> list[dict[str, Any]]:
    """Every credential of every pool, provider by provider, in the configured order."""
    now = time.time()
    return [view(pool, m, now) for pool in pools.pools.values() for m in pool.members]


async def enable(pools: Pools, provider: str, label: str) -> dict[str, Any]:
    """Put a credential back in service (and share it). Raises `NotFoundError`."""
    found = pools.find(provider, label)
    if found is None:
        raise NotFoundError(f"No credential {label!r} in the {provider} pool.")
    pool, member = found
    await pools.fresh(pool)
    pool.enable(member)
    await pools.share(pool)
    return view(pool, member, time.time())
