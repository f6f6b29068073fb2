"""Where a request waits, for how long, and how long at most: the gateway's queues, visible.

A request waits in two places. For a connection to its provider's host, only
where an operator set a limit (`upstream_max_connections`): `HostLimits`, the
`upstream` queue. For the ledger's database, while the statements in flight
are busy (group commit): its reservation and settlement wait for the next
statement, `DatabaseQueue`, the `database` queue. Every wait is observed in the
histogram `ai_service_queue_wait_seconds{queue}` (with the gauge
`ai_service_queue_waiting{queue}` of the requests waiting now), added to the
request's `Waits` (its row's `queue_ms`, its log line), and bounded: a request
that waited its queue's bound is refused with a 503 before anything is sent
(`upstream_queue_timeout`: its reservation is released; `database_queue_timeout`:
nothing was reserved). A settlement is never refused: it waits its turn.

The `Waits` of the request being served travels in a context variable that
`Call.start` sets, so the code that waits (the upstream client) needs no
reference to the request.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Protocol

from ai_service.errors import ServiceUnavailableError, UpstreamUnavailableError


class Waits:
    """The seconds one request spent waiting in the gateway's queues."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = 0.0

    @property
    def ms(self) -> int:
        return round(self.seconds * 1000)


CURRENT: ContextVar[Waits | None] = ContextVar("ai_service_waits", default=None)


def track() -> Waits:
    """Start counting the waits of the request served in this context."""
    waits = Waits()
    CURRENT.set(waits)
    return waits


class Meter(Protocol):
    """Where waits are observed (the app's `Metrics`)."""

    def waiting(self, queue: str, delta: int) -> None: ...

    def waited(self, queue: str, seconds: float) -> None: ...

    def batch_sizes(self, kind: str) -> Callable[[float], None]:
        """Observes the calls carried by each ledger statement of `kind` (group commit)."""
        ...


class UpstreamBusyError(UpstreamUnavailableError):
    """503: the host's connections were all in use for the whole bound of the queue."""

    code = "upstream_busy"


class Slot:
    """One connection's place under a host's limit; `release()` it once (more is a no-op)."""

    __slots__ = ("_host",)

    def __init__(self, host: _Host | None) -> None:
        self._host = host

    def release(self) -> None:
        host, self._host = self._host, None
        if host is not None:
            host.release()


FREE = Slot(None)  # the slot of a request under no limit


class _Host:
    __slots__ = ("open", "waiters")

    def __init__(self) -> None:
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def release(self) -> None:
        while self.waiters:  # hand the place to the oldest waiter still waiting
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.open -= 1


class HostLimits:
    """At most `limit` connections in use to each upstream host (None: no limit).

    A request past the limit waits for a connection to be given back, in
    arrival order, at most `timeout` seconds (0: refused at once), then is
    refused with `UpstreamBusyError`.
    """

    QUEUE = "upstream"

    def __init__(self, limit: int | None, timeout: float, meter: Meter) -> None:
        self.limit = limit
        self.timeout = timeout
        self.meter = meter
        self._hosts: dict[str, _Host] = {}

    def in_use(self, url: str) -> int:
        """How many connections to the host of `url` are in use."""
        host = self._hosts.get(_host_of(url))
        return 0 if host is None else host.open

    async def acquire(self, url: str, provider: str) -> Slot:
        """A place for one connection to the host of `url`; raises `UpstreamBusyError`."""
        if self.limit is None:
            return FREE
        name = _host_of(url)
        host = self._hosts.get(name)
        if host is None:
            host = self._hosts[name] = _Host()
        if host.open < self.limit and not host.waiters:
            host.open += 1
            return Slot(host)
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiter: asyncio.Future[None] = loop.create_future()
        host.waiters.append(waiter)
        self.meter.waiting(self.QUEUE, 1)
        try:
            async with asyncio.timeout(self.timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                host.release()  # handed over just as the wait ended: pass it on
            else:
                waiter.cancel()
                host.waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise UpstreamBusyError(
                    f"The gateway's {self.limit} connections to the {provider} provider "
                    f"stayed in use for {self.timeout:g} s; retry shortly.",
                    retry_after=1,
                ) from None
            raise
        finally:
            waited = loop.time() - started
            self.meter.waiting(self.QUEUE, -1)
            self.meter.waited(self.QUEUE, waited)
            waits = CURRENT.get()
            if waits is not None:
                waits.seconds += waited
        return Slot(host)


def _host_of(url: str) -> str:
    """`host:port` of an absolute URL."""
    return url.partition("://")[2].partition("/")[0]


class DatabaseBusyError(ServiceUnavailableError):
    """503: the reservation waited the whole bound for the database."""

    code = "database_busy"


class Ticket:
    """One operation's place in the database queue, from joining it to leaving it."""

    __slots__ = ("since", "waits")

    def __init__(self, waits: Waits | None) -> None:
        self.since = time.monotonic()
        self.waits = waits


class DatabaseQueue:
    """The bookkeeping of a ledger's queue of operations waiting for a statement.

    `joined()` when an operation queues (in the request's context), `left()`
    when its statement takes it or it gives up (on the event loop's thread).
    `patience` bounds a reservation's wait (None: unbounded).
    """

    QUEUE = "database"

    def __init__(self, meter: Meter, patience: float | None = None) -> None:
        self.meter = meter
        self.patience = patience

    def joined(self) -> Ticket:
        self.meter.waiting(self.QUEUE, 1)
        return Ticket(CURRENT.get())

    def left(self, ticket: Ticket, at: float | None = None) -> None:
        """The operation left the queue (at `at`, a `time.monotonic()`; default now)."""
        waited = max(0.0, (time.monotonic() if at is None else at) - ticket.since)
        self.meter.waiting(self.QUEUE, -1)
        self.meter.waited(self.QUEUE, waited)
        if ticket.waits is not None:
            ticket.waits.seconds += waited

    def refusal(self) -> DatabaseBusyError:
        return DatabaseBusyError(
            f"The gateway's database was busy for {self.patience:g} s; retry shortly.",
            retry_after=1,
        )


class NoMeter:
    """A meter that observes nothing (a ledger built without the app's metrics)."""

    def waiting(self, queue: str, delta: int) -> None:
        pass

    def waited(self, queue: str, seconds: float) -> None:
        pass

    def batch_sizes(self, kind: str) -> Callable[[float], None]:  # noqa: ARG002  (any kind)
        return _ignore


def _ignore(_value: float) -> None:
    pass


UNMETERED = DatabaseQueue(NoMeter())
