"""One signed POST of an event to the receiver, and what its answer means.

A delivery is successful on a 2xx answer within the timeout; anything else
(another status, a redirect, no answer in time, a refused or cut connection)
is a failed attempt, retried after a backoff. A `Retry-After` in seconds is
honoured. The receiver's body is read (up to 64 KiB) and ignored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from ai_service import __version__
from ai_service.webhooks import signing
from ai_service.webhooks.events import Claim

ANSWER_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """How an attempt ended: the receiver's status (None without an answer), the error."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def make_client(pool_size: int = 16) -> aiohttp.ClientSession:
    """The webhooks' own client (call inside a running loop; close it in the lifespan)."""
    connector = aiohttp.TCPConnector(limit=pool_size, enable_cleanup_closed=True)
    return aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))


def retry_after(value: str | None) -> float | None:
    """A `Retry-After` in seconds (the HTTP-date form is not honoured)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"could not connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the receiver closed the connection without an answer"
    return f"{type(exc).__name__}: {exc}"[:200]


async def post(
    client: aiohttp.ClientSession, url: str, key: bytes, claimed: Claim, seconds: float
) -> Answer:
    """Send one attempt of `claimed`, signed now, answered within `seconds`; never raises
    for the receiver's failures."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"ai-service/{__version__}",
        **signing.headers(key, claimed.event_id, int(time.time()), claimed.body),
    }
    try:
        async with client.post(
            url,
            data=claimed.body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as answer:
            await answer.content.read(ANSWER_MAX)
            if 200 <= answer.status < 300:
                return Answer(answer.status)
            wait = retry_after(answer.headers.get("Retry-After"))
            return Answer(answer.status, f"HTTP {answer.status}", wait)
    except TimeoutError:
        return Answer(None, f"no answer within {seconds:g} s")
    except aiohttp.ClientError as exc:
        return Answer(None, describe(exc))
