"""Operator authentication: the admin key for the admin API, a signed cookie for the dashboard.

The admin API takes `AI_SERVICE_ADMIN_KEY` in `X-Admin-Key` or as a Bearer
token, compared in constant time. The dashboard's sign-in sets a cookie whose
value is `<issued>.<HMAC-SHA256(admin key, issued)>`: it proves the key was
typed without containing it, expires after `SESSION_SECONDS`, and every session
ends when the admin key is rotated. With no admin key configured, both are
closed: the API answers 404 and the dashboard shows nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ai_service.api.deps import get_state
from ai_service.auth import same_secret
from ai_service.errors import AuthenticationError, NotFoundError

COOKIE = "ai_service_admin"
COOKIE_PATH = "/ai/admin"
SESSION_SECONDS = 12 * 3600
_CONTEXT = b"ai-service dashboard session v1:"

admin_key_header = APIKeyHeader(
    name="X-Admin-Key",
    auto_error=False,
    scheme_name="AdminKey",
    description="The operator's key, `AI_SERVICE_ADMIN_KEY`.",
)
admin_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminBearer",
    description="`Authorization: Bearer <AI_SERVICE_ADMIN_KEY>`.",
)


def configured_key(request: Request) -> str | None:
    secret = get_state(request).settings.admin_key
    return None if secret is None else secret.get_secret_value()


async def require_admin(
    request: Request,
    header: Annotated[str | None, Security(admin_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(admin_bearer)],
) -> None:
    """Admit a caller holding the admin key.

    Raises `NotFoundError` (404) when no admin key is configured, and
    `AuthenticationError` (401) for a missing or wrong key.
    """
    expected = configured_key(request)
    if expected is None:
        raise NotFoundError("The admin API is disabled: AI_SERVICE_ADMIN_KEY is not set.")
    given = header or (bearer.credentials if bearer is not None else None)
    if not given or not same_secret(given, expected):
        raise AuthenticationError(
            "Missing or invalid admin key: send AI_SERVICE_ADMIN_KEY in the X-Admin-Key "
            "header or as a Bearer token.",
            code="invalid_admin_key",
        )


AdminDep = Depends(require_admin)


def _mac(admin_key: str, issued: int) -> str:
    return hmac.new(admin_key.encode(), _CONTEXT + str(issued).encode(), hashlib.sha256).hexdigest()


def session_token(admin_key: str, now: float | None = None) -> str:
    """A dashboard session cookie value for this admin key, issued now."""
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_mac(admin_key, issued)}"


def valid_session(admin_key: str, token: str | None, now: float | None = None) -> bool:
    """Whether a cookie value was issued for this admin key and has not expired."""
    if not token:
        return False
    issued_text, _, mac = token.partition(".")
    if not issued_text.isdigit() or not mac:
        return False
    issued = int(issued_text)
    age = (time.time() if now is None else now) - issued
    if age < -60 or age > SESSION_SECONDS:
        return False
    return same_secret(mac, _mac(admin_key, issued))
