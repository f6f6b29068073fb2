"""Operator authentication: the admin key for the admin API, a signed cookie for the dashboard.

The admin API takes `AI_SERVICE_ADMIN_KEY` in `X-Admin-Key` or as a Bearer
token, compared in constant time. The dashboard's sign-in sets a cookie whose
value is `<issued>.<session id>.<HMAC-SHA256(admin key, issued and id)>`: it
proves the key was typed without containing it, expires after
`SESSION_SECONDS`, and every session ends when the admin key is rotated. The
server keeps each open session (`services.sessions`): signing out closes it on
every instance, so a copy of the cookie stops working too. With no admin key configured, both are
closed: the API answers 404 and the dashboard shows nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
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


def _mac(admin_key: str, issued: int, session_id: str) -> str:
    message = _CONTEXT + f"{issued}.{session_id}".encode()
    return hmac.new(admin_key.encode(), message, hashlib.sha256).hexdigest()


def session_token(admin_key: str, now: float | None = None) -> tuple[str, str]:
    """A new dashboard session for this admin key, issued now: (cookie value, session id).

    The session id is random; the server keeps its hash (`services.sessions`).
    """
    issued = int(time.time() if now is None else now)
    session_id = secrets.token_urlsafe(24)
    return f"{issued}.{session_id}.{_mac(admin_key, issued, session_id)}", session_id


def session_of(admin_key: str, token: str | None, now: float | None = None) -> str | None:
    """The session id of a cookie value issued for this admin key and not expired, else None.

    Whether the session is still open (not signed out) is the server's to say.
    """
    if not token:
        return None
    issued_text, _, rest = token.partition(".")
    session_id, _, mac = rest.partition(".")
    if not issued_text.isdigit() or not session_id or not mac:
        return None
    issued = int(issued_text)
    age = (time.time() if now is None else now) - issued
    if age < -60 or age > SESSION_SECONDS:
        return None
    return session_id if same_secret(mac, _mac(admin_key, issued, session_id)) else None
