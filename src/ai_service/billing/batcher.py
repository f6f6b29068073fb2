"""Group commit: concurrent ledger operations sent as one statement.

A `Batcher` runs at most `inflight` statements at a time. A call that arrives
while they are all busy waits in a queue, and the next statement takes every
call waiting (up to `size`), so under load many reservations or settlements
share one round trip, one lock of each balance row and one commit (one flush
to disk); a lone call still goes at once, as the single-row statement, from
the caller's own task.

The time a call waits in the queue, until a statement takes it, is the
`database` queue of `waits` (its histogram, the request's `queue_ms`); with a
`patience`, a call still queued after that long leaves the queue unrun and
raises `DatabaseBusyError`.

Every statement sent is observed with the number of calls it carries (1 for a
lone call) by the queue's meter, under the batcher's `kind`: the histogram
`ai_service_ledger_batch_size{kind}`, whose count is the statements and whose
sum is the calls.

When a grouped statement fails cleanly (it rolled back as a whole, for example
on one row's bad data), each of its calls is run again on its own, so one call's
error reaches that call only. When the connection breaks mid-statement, its
outcome is unknown: every call of the group gets the error, as a single
statement's caller would.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from ai_service.billing.pgpool import broken
from ai_service.waits import UNMETERED, DatabaseQueue, Ticket

log = logging.getLogger("ai_service.ledger")

T = TypeVar("T")
R = TypeVar("R")


class Queued(Generic[T, R]):
    """A call waiting for a statement: its item, its outcome to come, its place in the queue."""

    __slots__ = ("future", "item", "ticket")

    def __init__(self, item: T, future: asyncio.Future[R], ticket: Ticket) -> None:
        self.item = item
        self.future = future
        self.ticket = ticket


class Batcher(Generic[T, R]):
    """Runs `one(item)` for a lone call and `many(items)` for a group of calls.

    `many` returns one outcome per item, in order: an outcome, or None for an
    item the group could not decide, which then runs alone. `key(item)` names
    what an item changes: two items with the same key never share a statement.
    """

    def __init__(
        self,
        one: Callable[[T], Awaitable[R]],
        many: Callable[[list[T]], Awaitable[list[R | None]]],
        key: Callable[[T], Hashable],
        size: int = 64,
        inflight: int = 1,
        queue: DatabaseQueue = UNMETERED,
        kind: str = "statement",
    ) -> None:
        self._one = one
        self._many = many
        self._key = key
        self._size = size
        self._inflight = inflight
        self._waits = queue
        self._sized = queue.meter.batch_sizes(kind)
        self._queue: deque[Queued[T, R]] = deque()
        self._busy = 0  # statements in flight: callers running their own, and draining tasks
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """The outcome of `item`'s statement, once it has committed.

        When nothing is queued and fewer than `inflight` statements run, the
        caller runs its own statement at once, in its own task: a lone call
        costs no hop through another task. Otherwise the call queues and a
        draining task runs it, grouped with the others waiting; a cancelled
        caller then still waits for that statement to end before it sees the
        cancellation.
        """
        if not self._queue and self._busy < self._inflight:
            self._busy += 1
            self._sized(1)
            try:
                return await self._one(item)
            finally:
                self._busy -= 1
                self._kick()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        queued = Queued(item, future, self._waits.joined())
        self._queue.append(queued)
        self._kick()
        try:
            return await self._outcome(queued)
        except asyncio.CancelledError:
            if not future.done():
                await asyncio.wait((future,))
            if not future.cancelled():
                future.exception()  # seen: its outcome goes with the cancellation
            raise

    async def _outcome(self, queued: Queued[T, R]) -> R:
        """The call's outcome; `DatabaseBusyError` if it is still queued after the patience.

        The patience is one timer (cheaper than a timeout scope for every queued call)
        that refuses the call only if no statement took it yet.
        """
        patience = self._waits.patience
        if patience is None:
            return await asyncio.shield(queued.future)
        timer = asyncio.get_running_loop().call_later(patience, self._expire, queued)
        try:
            return await asyncio.shield(queued.future)
        finally:
            timer.cancel()

    def _expire(self, queued: Queued[T, R]) -> None:
        if queued.future.done() or queued not in self._queue:
            return  # a statement took it: its outcome decides
        self._queue.remove(queued)
        self._waits.left(queued.ticket)
        queued.future.set_exception(self._waits.refusal())

    def _kick(self) -> None:
        """Start a draining task if calls are waiting and a statement may start."""
        if self._queue and self._busy < self._inflight:
            self._busy += 1
            task = asyncio.get_running_loop().create_task(self._drain())
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        keys: set[Hashable] = set()
        queue = self._queue
        while queue and len(batch) < self._size:
            key = self._key(queue[0].item)
            if key in keys:
                break
            keys.add(key)
            queued = queue.popleft()
            self._waits.left(queued.ticket)
            batch.append((queued.item, queued.future))
        return batch

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                try:
                    if len(batch) == 1:
                        await self._run_one(*batch[0])
                    else:
                        await self._run_many(batch)
                except BaseException as exc:  # shutdown: no caller is left hanging
                    for _, future in batch:
                        if future.done():
                            continue
                        if isinstance(exc, asyncio.CancelledError):
                            future.cancel()
                        else:
                            future.set_exception(exc)
                    raise
        finally:
            self._busy -= 1

    async def _run_one(self, item: T, future: asyncio.Future[R]) -> None:
        self._sized(1)
        try:
            outcome = await self._one(item)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(outcome)

    async def _run_many(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self._sized(len(batch))
        try:
            outcomes = await self._many([item for item, _ in batch])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if broken(exc):
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            log.warning("grouped ledger statement failed; its calls run one by one", exc_info=True)
            for item, future in batch:
                await self._run_one(item, future)
            return
        alone: list[tuple[T, asyncio.Future[R]]] = []
        for (item, future), outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                alone.append((item, future))
            elif not future.done():
                future.set_result(outcome)
        for item, future in alone:
            await self._run_one(item, future)

    async def close(self) -> None:
        """Wait for the statements in flight."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
