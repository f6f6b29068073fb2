"""Pool credentials operators add at run time: stored, listed, removed, and taken up.

A credential added through the admin API, the CLI or the dashboard is one row
of `api_upstream_credentials`: its key encrypted with the setting
`credentials_key` (`AI_SERVICE_CREDENTIALS_KEY`), or the name of an
environment variable that holds it. Nothing returns a stored key. Every
instance re-reads the table every `catalog_refresh_seconds` (and the one that
made the change at once) and serves with the new list (`refresh`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import SecretStr, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service import pools as pools_mod, providers
from ai_service.config import Settings
from ai_service.errors import IdempotencyConflictError, InvalidRequestError, NotFoundError
from ai_service.pools.credentials import DEFAULT_LABEL, CredentialSpec, encrypt_key
from ai_service.providers import REGISTRY
from ai_service.state import AppState
from ai_service.storage.db import DB_ERRORS
from ai_service.storage.models import ApiUpstreamCredential

log = logging.getLogger("ai_service.pools")

Stored = dict[str, list[CredentialSpec]]


def spec_of(row: ApiUpstreamCredential) -> CredentialSpec:
    key = SecretStr(row.key_encrypted) if row.key_encrypted is not None else None
    return CredentialSpec(
        label=row.label,
        key_env=row.key_env,
        key_encrypted=key,
        base_url=row.base_url,
        weight=row.weight,
        rpm=row.rpm,
        tpm=row.tpm,
    )


async def stored(session: AsyncSession) -> tuple[Stored, tuple[Any, ...]]:
    """The stored credentials by provider, and a fingerprint of them (to see a change)."""
    rows = (
        await session.scalars(select(ApiUpstreamCredential).order_by(ApiUpstreamCredential.id))
    ).all()
    found: Stored = {}
    for row in rows:
        found.setdefault(row.provider, []).append(spec_of(row))
    mark = tuple(
        (r.id, r.provider, r.label, r.key_encrypted, r.key_env, r.base_url, r.weight, r.rpm, r.tpm)
        for r in rows
    )
    return found, mark


async def add(
    session: AsyncSession,
    settings: Settings,
    provider: str,
    label: str,
    *,
    key: str | None = None,
    key_env: str | None = None,
    base_url: str | None = None,
    weight: int = 1,
    rpm: int | None = None,
    tpm: int | None = None,
) -> dict[str, Any]:
    """Store a credential (its key encrypted). Raises `InvalidRequestError` (400) for a bad
    entry or a key without `credentials_key`, `IdempotencyConflictError` (409) for a label
    taken."""
    if provider not in REGISTRY:
        raise InvalidRequestError(f"No provider {provider!r}.", param="provider")
    if (key is None) == (key_env is None):
        raise InvalidRequestError("Give exactly one of key and key_env.", param="key")
    encrypted = None
    if key is not None:
        secret = settings.credentials_secret
        if secret is None:
            raise InvalidRequestError(
                "A key is stored only encrypted: set AI_SERVICE_CREDENTIALS_KEY on the gateway "
                "(ai-service pools new-secret), or give key_env.",
                param="key",
            )
        encrypted = encrypt_key(key, secret)
    try:
        spec = CredentialSpec(
            label=label,
            key_env=key_env,
            key_encrypted=SecretStr(encrypted) if encrypted is not None else None,
            base_url=base_url,
            weight=weight,
            rpm=rpm,
            tpm=tpm,
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(p) for p in problem["loc"]) or "label"
        raise InvalidRequestError(f"{field}: {problem['msg']}", param=field) from None
    taken = {s.label for s in settings.pools.get(provider, [])} | {DEFAULT_LABEL}
    if label in taken:
        raise IdempotencyConflictError(
            f"The label {label!r} is taken in the {provider} pool.", param="label"
        )
    row = ApiUpstreamCredential(
        provider=provider,
        label=spec.label,
        key_encrypted=encrypted,
        key_env=key_env,
        base_url=base_url,
        weight=weight,
        rpm=rpm,
        tpm=tpm,
    )
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise IdempotencyConflictError(
            f"The label {label!r} is taken in the {provider} pool.", param="label"
        ) from None
    return {
        "provider": provider,
        "label": label,
        "key": "env " + key_env if key_env else "stored encrypted",
        "base_url": base_url,
        "weight": weight,
        "rpm": rpm,
        "tpm": tpm,
    }


async def remove(session: AsyncSession, provider: str, label: str) -> None:
    """Delete a stored credential. Raises `NotFoundError` (the settings' cannot be removed)."""
    done = await session.execute(
        delete(ApiUpstreamCredential).where(
            ApiUpstreamCredential.provider == provider, ApiUpstreamCredential.label == label
        )
    )
    await session.commit()
    if not getattr(done, "rowcount", 0):
        raise NotFoundError(
            f"No stored credential {label!r} in the {provider} pool "
            "(one of the settings is changed in the settings)."
        )


async def refresh(state: AppState) -> None:
    """Re-read the table; on a change, serve with the new list of credentials."""
    async with state.sessions() as session:
        found, mark = await stored(session)
    if mark != state.pools.stored_mark:
        state.pools.stored_mark = mark
        apply(state, found)


async def refresh_forever(state: AppState) -> None:
    """Take up the credentials other instances (or the CLI) stored, every few seconds."""
    while True:
        await asyncio.sleep(max(state.settings.catalog_refresh_seconds, 1.0))
        try:
            await refresh(state)
        except DB_ERRORS:
            log.warning("pools: stored credentials not re-read: database unreachable")
        except Exception:  # the loop outlives a bug in one pass, and says so
            log.exception("pools: stored credentials not re-read")


def apply(state: AppState, found: Stored) -> None:
    """Serve with the settings' and these stored credentials."""
    settings = state.settings
    state.pools.apply(pools_mod.sourced(settings, found))
    state.adapters = {**providers.configured(settings), **state.pools.primaries()}
    state.upstream.observe = state.pools.observe if state.pools.pools else None
