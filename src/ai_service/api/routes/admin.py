"""Admin API, users and keys: `/ai/admin/api/users...` and `/ai/admin/api/keys...`.

Every route needs the admin key (see `api/admin_auth.py`) and calls the same
service functions as the CLI. Money is exact: amounts in as decimal strings
(`"12.50"`), out as decimal strings (`usd_available`) next to integer nano-USD.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from ai_service.api.admin_auth import AdminDep
from ai_service.api.deps import StateDep
from ai_service.api.responses import json_response
from ai_service.billing.money import usd_to_nano
from ai_service.errors import InvalidRequestError
from ai_service.services import accounts, usage
from ai_service.services.limits import KEEP
from ai_service.state import AppState

PREFIX = "/ai/admin/api"
router = APIRouter(prefix=PREFIX, tags=["admin: users and keys"], dependencies=[AdminDep])

USD_HELP = "USD as a decimal string (at most 9 decimals)"
MAX_AMOUNT = usd_to_nano("1000000000")


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=accounts.NAME_MAX, examples=["alice"])
    balance_usd: str = Field("0", max_length=32, description=USD_HELP, examples=["25.00"])


class TopUp(BaseModel):
    amount_usd: str = Field(max_length=32, description=USD_HELP, examples=["10.00"])
    note: str | None = Field(None, max_length=500, description="why, for the ledger")


ALLOW_HELP = (
    "PROVIDER:MODEL glob patterns the key may use (`openai:*`, `claude:claude-sonnet-*`, "
    "`*:gpt-4.1*`); null = every model"
)
EXPIRY_HELP = (
    "when the key stops working: ISO 8601 (a date is its midnight UTC; UTC without an "
    "offset) or Unix seconds; null = never"
)
Patterns = list[Annotated[str, Field(max_length=200)]]


class NewKey(BaseModel):
    name: str | None = Field(None, max_length=accounts.NAME_MAX, description="a label")
    allowed_models: Patterns | None = Field(
        None, max_length=100, description=ALLOW_HELP, examples=[["openai:gpt-5.4*"]]
    )
    expires_at: str | None = Field(
        None, max_length=40, description=EXPIRY_HELP, examples=["2027-01-01"]
    )

    def policy(self) -> accounts.Policy:
        return accounts.Policy(allowed=self.allowed_models, expires=self.expires_at)


class KeyUpdate(BaseModel):
    """The fields to change; a field left out stays as it is, null clears it."""

    allowed_models: Patterns | None = Field(
        None, max_length=100, description=ALLOW_HELP, examples=[["claude:*"]]
    )
    expires_at: str | None = Field(
        None, max_length=40, description=EXPIRY_HELP, examples=["2027-01-01T00:00:00Z"]
    )

    def policy(self) -> accounts.Policy:
        given = self.model_fields_set
        return accounts.Policy(
            allowed=self.allowed_models if "allowed_models" in given else KEEP,
            expires=self.expires_at if "expires_at" in given else KEEP,
        )


def parse_usd(text: str, param: str) -> int:
    """USD decimal string to nano-USD. Raises `InvalidRequestError`."""
    try:
        amount = usd_to_nano(text.strip())
    except (TypeError, ValueError):
        amount = None
    if amount is None or abs(amount) > MAX_AMOUNT:
        raise InvalidRequestError(
            f'Invalid amount {text!r}: give USD as a decimal string such as "12.50" '
            "(at most 9 decimals, at most one billion).",
            param=param,
        )
    return amount


async def user_detail(state: AppState, name: str) -> dict[str, Any]:
    async with state.sessions() as session:
        user = await accounts.get_user(session, name)
        view = accounts.user_view(user)
        view["account"] = await usage.account(session, user.id)
        view["keys"] = await accounts.list_keys(session, name)
    return view


@router.post("/users", summary="Create a user with an opening balance and a first key")
async def create_user(body: NewUser, state: StateDep) -> Response:
    amount = parse_usd(body.balance_usd, "balance_usd")
    async with state.sessions() as session:
        key = await accounts.create_user(session, body.name, amount)
    view = await user_detail(state, key.user)
    return json_response({"user": view, "key": accounts.new_key_view(key)}, 201)


@router.get("/users", summary="List users with their balances")
async def list_users(state: StateDep) -> Response:
    async with state.sessions() as session:
        rows = [accounts.user_view(u) for u in await accounts.list_users(session)]
    return json_response({"object": "list", "data": rows})


@router.get("/users/{name}", summary="A user: balance, spend, per-model totals and keys")
async def show_user(name: str, state: StateDep) -> Response:
    return json_response(await user_detail(state, name))


@router.post("/users/{name}/topup", summary="Add USD to a user's balance (a ledger top-up)")
async def topup(name: str, body: TopUp, state: StateDep) -> Response:
    amount = parse_usd(body.amount_usd, "amount_usd")
    async with state.sessions() as session:
        user = await accounts.topup(session, name, amount, body.note)
        return json_response(accounts.user_view(user))


@router.post("/users/{name}/disable", summary="Disable a user: every key stops working")
async def disable_user(name: str, state: StateDep) -> Response:
    async with state.sessions() as session:
        user = await accounts.set_disabled(session, name, True)
        view = accounts.user_view(user)
    state.keys.forget()
    return json_response(view)


@router.post("/users/{name}/enable", summary="Enable a disabled user again")
async def enable_user(name: str, state: StateDep) -> Response:
    async with state.sessions() as session:
        user = await accounts.set_disabled(session, name, False)
        view = accounts.user_view(user)
    state.keys.forget()
    return json_response(view)


@router.post(
    "/users/{name}/keys",
    summary="Create another key for a user (shown once), with its allow-list and expiry",
)
async def create_key(name: str, state: StateDep, body: NewKey | None = None) -> Response:
    body = body or NewKey()
    async with state.sessions() as session:
        key = await accounts.create_key(session, name, body.name, body.policy())
        view = accounts.key_view(await accounts.get_key(session, key.prefix), key.user)
    return json_response({**view, **accounts.new_key_view(key)}, 201)


@router.get("/keys", summary="List keys (prefixes only), by user or by prefix")
async def list_keys(
    state: StateDep,
    user: Annotated[str | None, Query(description="only this user's keys")] = None,
    prefix: Annotated[str | None, Query(description="keys whose prefix starts so")] = None,
) -> Response:
    async with state.sessions() as session:
        if user is not None:
            await accounts.get_user(session, user)
        rows = await accounts.list_keys(session, user, prefix)
    return json_response({"object": "list", "data": rows})


@router.get("/keys/{prefix}", summary="A key by its visible prefix")
async def show_key(prefix: str, state: StateDep) -> Response:
    async with state.sessions() as session:
        key = await accounts.get_key(session, prefix)
        return json_response(accounts.key_view(key, await accounts.owner_name(session, key)))


@router.patch(
    "/keys/{prefix}",
    summary="Change a key's allow-list or expiry (this instance at once, others within "
    "the key cache's seconds)",
)
async def update_key(prefix: str, body: KeyUpdate, state: StateDep) -> Response:
    async with state.sessions() as session:
        key = await accounts.update_key(session, prefix, body.policy())
        view = accounts.key_view(key, await accounts.owner_name(session, key))
    state.keys.forget()
    return json_response(view)


@router.post("/keys/{prefix}/revoke", summary="Revoke a key by its visible prefix")
async def revoke_key(prefix: str, state: StateDep) -> Response:
    async with state.sessions() as session:
        key = await accounts.revoke_key(session, prefix)
        view = accounts.key_view(key, await accounts.owner_name(session, key))
    state.keys.forget()
    return json_response(view)
