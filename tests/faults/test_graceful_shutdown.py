"""SIGTERM with slow streams in flight (issue 6, item 7).

The process stops accepting connections at once, lets the streams it is
serving finish (bounded), settles each of them, and exits with status 0.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.fakes.tokens import prompt_tokens, split_chunks
from tests.faults.conftest import Spawn
from tests.faults.plans import TEN_WORDS, chat_body
from tests.support.directed import DirectedOpenAI, new_nonce
from tests.support.invariants import NANO_PER_TOKEN, Books
from tests.support.load import Job, Outcome, run_jobs
from tests.support.processes import port_refuses

pytestmark = pytest.mark.slow

STREAMS = 6


def test_sigterm_lets_slow_streams_finish_settles_them_and_exits_0(
    fresh_db: str, upstream: DirectedOpenAI, spawn: Spawn
) -> None:
    books = Books(fresh_db)
    gw = spawn(fresh_db, upstream, "gw-term")
    key = books.create_user("alice", "5")
    # each stream: 10 chunks, 0.3 s apart: about 2.7 s, most of it after the signal
    jobs = [
        Job(n, "slow-drip", "alice", key, chat_body("slow-drip", n, True), lambda: gw.url)
        for n in (new_nonce() for _ in range(STREAMS))
    ]

    async def scenario() -> tuple[list[Outcome], bool, float]:
        load = asyncio.ensure_future(run_jobs(jobs, concurrency=STREAMS, deadline=30))
        deadline = time.monotonic() + 10
        while len(await asyncio.to_thread(books.pending)) < STREAMS:  # all reserved
            assert time.monotonic() < deadline, "the streams did not start"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        gw.signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.sleep(0.5)
        refused = await asyncio.to_thread(port_refuses, gw.port)
        outcomes = await load
        return outcomes, refused, signalled

    outcomes, refused, signalled = asyncio.run(scenario())
    code = gw.wait(20)
    exited_after = time.monotonic() - signalled

    assert refused, "the process still accepted connections after SIGTERM"
    assert [(o.status, o.complete, o.error) for o in outcomes] == [(200, True, None)] * STREAMS, [
        (o.status, o.transport_error, o.data_events) for o in outcomes
    ]
    assert [o.text for o in outcomes] == [TEN_WORDS] * STREAMS
    assert exited_after < 15
    rows = books.rows()
    expected = (
        prompt_tokens(jobs[0].body["messages"]) + len(split_chunks(TEN_WORDS))
    ) * NANO_PER_TOKEN
    assert [(r.status, r.cost) for r in rows] == [("ok", expected)] * STREAMS
    assert books.violations() == []
    assert "Traceback" not in gw.logs()
    problems = []
    if code != 0:
        problems.append(f"exit status {code} after a graceful SIGTERM")
    if books.scalar("SELECT count(*) FROM api_instances") != 0:
        problems.append("the instance left its heartbeat row behind at a clean shutdown")
    assert problems == []
