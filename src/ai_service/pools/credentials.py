"""Upstream credentials: what one pool entry is, and where its key comes from.

A provider's pool is a list of credentials, each a key with an optional base
URL, a weight and its own limits (requests and tokens per minute). The key is
given one of three ways, and never shown again once given:

    key            the key itself (settings, YAML; kept as a secret)
    key_env        the name of an environment variable that holds it
    key_encrypted  a Fernet token of it, made by `ai-service pools encrypt-key`
                   and decrypted with `AI_SERVICE_CREDENTIALS_KEY`

Entries come from the settings (`pools`) and from the database, where
operators add them at run time (`api_upstream_credentials`: a key is stored
only encrypted, or as a variable's name). A provider with entries only in the
database keeps its conventional key (`OPENAI_API_KEY`) as its first
credential, labelled `default`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

CREDENTIALS_KEY_VARIABLE = "AI_SERVICE_CREDENTIALS_KEY"
DEFAULT_LABEL = "default"


class CredentialSpec(BaseModel):
    """One pool entry as the settings give it (`pools: {openai: [{label: a, key_env: ...}]}`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    key: SecretStr | None = None
    key_env: str | None = None
    key_encrypted: SecretStr | None = None
    base_url: str | None = None
    weight: int = Field(1, ge=1, le=1000)
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> CredentialSpec:
        given = [s for s in (self.key, self.key_env, self.key_encrypted) if s is not None]
        if len(given) != 1:
            raise ValueError(
                f"pool credential {self.label!r}: give exactly one of key, key_env, key_encrypted"
            )
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"pool credential {self.label!r}: base_url must be an http(s) URL")
        return self


@dataclass(frozen=True, slots=True)
class Credential:
    """One upstream key, ready to use: the key is out of every repr and log."""

    label: str
    key: str = field(repr=False)
    base_url: str
    weight: int = 1
    rpm: int | None = None
    tpm: int | None = None


def check_secret(secret: str) -> str:
    """A Fernet key (`ai-service pools new-secret`). Raises `ValueError` otherwise."""
    Fernet(secret.encode())
    return secret


class CredentialError(ValueError):
    """A pool entry whose key cannot be had (variable unset, token unreadable)."""


def encrypt_key(plain: str, secret: str) -> str:
    """The Fernet token of an upstream key, for `key_encrypted`."""
    return Fernet(secret.encode()).encrypt(plain.encode()).decode()


def decrypt_key(token: str, secret: str) -> str:
    """The key in a Fernet token. Raises `CredentialError` for a wrong secret or token."""
    try:
        return Fernet(secret.encode()).decrypt(token.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise CredentialError("cannot decrypt with AI_SERVICE_CREDENTIALS_KEY") from exc


def resolve(
    spec: CredentialSpec,
    default_url: str,
    secret: str | None,
    environ: Mapping[str, str] = os.environ,
) -> Credential:
    """The credential of a pool entry; `secret` decrypts `key_encrypted` (the setting
    `credentials_key`). Raises `CredentialError` when its key cannot be had."""
    if spec.key is not None:
        key = spec.key.get_secret_value()
    elif spec.key_env is not None:
        key = environ.get(spec.key_env, "")
        if not key:
            raise CredentialError(f"pool credential {spec.label!r}: {spec.key_env} is not set")
    else:
        assert spec.key_encrypted is not None
        if not secret:
            raise CredentialError(
                f"pool credential {spec.label!r} is encrypted: set {CREDENTIALS_KEY_VARIABLE}"
            )
        try:
            key = decrypt_key(spec.key_encrypted.get_secret_value(), secret)
        except CredentialError as exc:
            raise CredentialError(f"pool credential {spec.label!r}: {exc}") from exc
    return Credential(
        spec.label, key, spec.base_url or default_url, spec.weight, spec.rpm, spec.tpm
    )
