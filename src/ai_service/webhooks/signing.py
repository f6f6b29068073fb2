"""Standard Webhooks' symmetric signature (https://www.standardwebhooks.com).

A delivery carries three headers: `webhook-id` (the event's id, the same on
every attempt), `webhook-timestamp` (the attempt's Unix time in seconds) and
`webhook-signature`: `v1,` and the base64 of
HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"), where the key is
the secret's bytes: the secret is written `whsec_` and their base64.

    >>> key = secret_key("whsec_" + "A" * 32)
    >>> signature(key, "evt_1", 1767225600, b"{}")
    'v1,xpSbzLcgTP9wGPf2iclS9dvSiZ8QCTx989RitQSh+1M='
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
MIN_BYTES, MAX_BYTES = 24, 64


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret. Raises `ValueError` for anything else."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret is 'whsec_' and base64 (ai-service webhooks secret)")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is 'whsec_' and base64: this is not base64") from None
    if not MIN_BYTES <= len(key) <= MAX_BYTES:
        raise ValueError(f"a webhook secret holds {MIN_BYTES} to {MAX_BYTES} random bytes")
    return key


def new_secret() -> str:
    """A fresh random secret (32 bytes)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header of one attempt."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(key: bytes, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers that identify and sign one attempt."""
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, event_id, timestamp, body),
    }
