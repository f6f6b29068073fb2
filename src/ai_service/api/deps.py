"""Annotated dependencies shared by the routes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, Query, Request
from pydantic import BeforeValidator

from ai_service.auth import Principal, key_from_headers
from ai_service.services import usage
from ai_service.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.ai
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_principal(request: Request) -> Principal:
    """The caller of a key-authenticated route. Raises `AuthenticationError` (401)."""
    state = get_state(request)
    headers = request.headers
    secret = key_from_headers(headers.get("x-api-key"), headers.get("authorization"))
    return await state.keys.authenticate(secret)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def request_id(request: Request) -> str:
    """The gateway's id of this request (its row's `request_id`, echoed as `X-Request-ID`)."""
    value: str = request.scope["state"]["request_id"]
    return value


def client_request_id(request: Request) -> str | None:
    """The client's own valid `X-Request-ID`, if it sent one."""
    value: str | None = request.scope["state"]["client_request_id"]
    return value


# every route's `since` / `until`, read by the one rule of `usage.parse_time` (400 if bad)
Since = Annotated[
    dt.datetime | None,
    BeforeValidator(usage.parse_time),
    Query(description=f"from (inclusive); {usage.TIME_HELP}"),
]
Until = Annotated[
    dt.datetime | None,
    BeforeValidator(usage.parse_time),
    Query(description=f"to (exclusive); {usage.TIME_HELP}"),
]
