"""What a fake upstream remembers about each request it received."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecordedRequest:
    """One request as the fake received it, and what became of it.

    ``headers`` have lower-cased names. ``body`` is the parsed JSON (``None`` if
    the body was not JSON). ``status`` is the HTTP status sent (``None`` if none
    was). ``chunks_sent`` counts the delta chunks written to the socket;
    ``disconnected`` is set when the client went away before the fake finished;
    ``completed`` when the whole answer was sent; ``cut`` when the fake itself
    cut or reset the connection. ``peer`` is the client's address (host, port),
    the same for requests that came over one kept-alive connection.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes
    status: int | None = None
    chunks_sent: int = 0
    disconnected: bool = False
    completed: bool = False
    cut: bool = False
    peer: tuple[str, int] | None = None  # the client's address: one per connection
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait_done(self, timeout: float = 5.0) -> bool:
        """Block until the fake has finished with this request; False on timeout."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()
