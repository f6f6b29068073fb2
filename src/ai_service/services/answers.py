"""What a service hands its route: an answer, already charged, in domain terms.

A service never builds an HTTP response: it returns one of these, and the
route of the API surface renders it (`api.render`). A non-streamed answer is
settled before it is returned; a streamed one settles itself exactly once
while (or after) its frames are sent, and `closed` settles a stream whose
frames were never sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole JSON answer (`payload`), and the headers that go with it."""

    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Streamed:
    """An answer sent as server-sent events: its encoded frames, and the headers."""

    frames: AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    closed: Callable[[], None] | None = None  # called once the response is over


Result = Answer | Streamed
