"""What a key holder sees of its own key and account: `GET /ai/key` and `GET /ai/account`.

`GET /ai/key` follows OpenRouter's `GET /api/v1/key` (a `data` object with
the key's `label`, `usage` and `expires_at`) and adds what this gateway
knows: the key's name, user, allow-list, rate limits, the user's balance and
the key's spend. Money is an exact USD decimal string next to integer
nano-USD; `usage` is a float of USD, as OpenRouter gives it.

Rate limits are the ones that apply: a key's own (None: nothing beyond its
user's), its user's own or else the gateway's default (None: unlimited).

`budgets` lists the budgets the key's requests must stay within (its own
and its user's), each with its limit, what it used, what remains and when it
resets (`budget_admin.standing_view`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.auth import Principal
from ai_service.billing.money import usd_float, usd_str
from ai_service.config import Settings
from ai_service.errors import AuthenticationError
from ai_service.services import budget_admin, usage
from ai_service.services.accounts import key_view
from ai_service.storage.models import ApiKey, ApiUser


def limits_view(rpm: int | None, tpm: int | None) -> dict[str, int | None]:
    """Limits as shown: per minute, None where there is none (a stored 0 included)."""
    return {"requests_per_minute": rpm or None, "tokens_per_minute": tpm or None}


def user_limits(user: ApiUser, settings: Settings) -> dict[str, int | None]:
    """A user's limits that apply: its own where set, else the gateway's defaults."""
    rpm = user.rpm_limit if user.rpm_limit is not None else settings.default_rpm
    tpm = user.tpm_limit if user.tpm_limit is not None else settings.default_tpm
    return limits_view(rpm, tpm)


def balance_view(user: ApiUser) -> dict[str, Any]:
    return {
        "usd_available": usd_str(user.usd_available),
        "usd_reserved": usd_str(user.usd_reserved),
        "nano_usd_available": user.usd_available,
        "nano_usd_reserved": user.usd_reserved,
    }


async def key_report(
    session: AsyncSession, principal: Principal, settings: Settings
) -> dict[str, Any]:
    """The caller's key as stored now (not as the key cache holds it).

    Raises `AuthenticationError` if the key or its user went away meanwhile.
    """
    key = await session.get(ApiKey, principal.key_id)
    user = await session.get(ApiUser, principal.user_id)
    if key is None or user is None:
        raise AuthenticationError("Invalid API key, or the key was revoked.")
    view = key_view(key, user.name)
    day = usage.today()
    month = day.replace(day=1)
    total = await usage.spend_since(session, user.id, None, key.id)
    spend = {
        "today_usd": usd_str(await usage.spend_since(session, user.id, day, key.id)),
        "month_usd": usd_str(await usage.spend_since(session, user.id, month, key.id)),
        "total_usd": usd_str(total),
    }
    return {
        "data": {
            "object": "key",
            "label": key.prefix,
            "prefix": key.prefix,
            "name": key.name,
            "user": user.name,
            "created_at": view["created_at"],
            "expires_at": view["expires_at"],
            "allowed_models": key.allowed_models,
            "rate_limits": {
                "key": limits_view(key.rpm_limit, key.tpm_limit),
                "user": user_limits(user, settings),
            },
            "balance": balance_view(user),
            "usage": usd_float(total),
            "spend": spend,
            "budgets": await budget_admin.budget_views(session, user.id, key.id),
        }
    }


async def account_report(
    session: AsyncSession, principal: Principal, settings: Settings
) -> dict[str, Any]:
    """The caller's account (`usage.account`), with its user's rate limits and the budgets
    its requests must stay within (the key's and the user's)."""
    report = await usage.account(session, principal.user_id, principal.key_prefix)
    user = await session.get(ApiUser, principal.user_id)
    assert user is not None  # `usage.account` found it
    report["rate_limits"] = user_limits(user, settings)
    report["budgets"] = await budget_admin.budget_views(
        session, principal.user_id, principal.key_id
    )
    return report
