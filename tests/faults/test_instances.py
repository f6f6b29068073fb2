"""Two gateway processes on one PostgreSQL under concurrent load, and one of them SIGKILLed.

DESIGN §8 and §11: across any number of instances the balance never goes
negative, no reservation is left open, every balance equals top-ups minus
logged costs, no request is charged twice, and every answer a client got is
logged and charged once. A killed instance's reservations are released by
another instance once its lease has passed, and nothing of a live instance's
is touched.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ai_service.instances import ABANDONED
from tests.faults.accounting import Tally, mismatches, start_all, statuses
from tests.faults.conftest import Spawn
from tests.faults.plans import chat_body, load_jobs
from tests.support.directed import DirectedOpenAI, new_nonce
from tests.support.invariants import Books
from tests.support.load import Job, Outcome, run_jobs

pytestmark = pytest.mark.slow

RICH, POOR = "5", "0.02"


def make_users(books: Books) -> list[tuple[str, str]]:
    """One rich user (every other request) and four whose balance runs out under the load."""
    rich = ("rich", books.create_user("rich", RICH))
    poor = [(f"poor{i}", books.create_user(f"poor{i}", POOR)) for i in range(4)]
    return [rich, poor[0], rich, poor[1], rich, poor[2], rich, poor[3]]


def test_two_instances_under_load_keep_the_books(
    fresh_db: str, upstream: DirectedOpenAI, spawn: Spawn
) -> None:
    books = Books(fresh_db)
    a = spawn(fresh_db, upstream, "gw-a", start=False)
    b = spawn(fresh_db, upstream, "gw-b", start=False)
    start_all(a, b)
    users = make_users(books)
    jobs = load_jobs(320, users, [lambda: a.url, lambda: b.url], seed=6, repeats=12)

    outcomes = asyncio.run(run_jobs(jobs, concurrency=16, deadline=90))
    books.wait_settled(20)

    assert books.violations() == []
    tally = Tally()
    assert mismatches(outcomes, books, upstream, tally) == [], str(tally)
    assert tally.transport_errors == 0, statuses(outcomes)
    # the load did what it was meant to: faults, disconnects, replays, balances running out
    assert tally.failed > 0 and tally.sse_errors > 0 and tally.disconnected > 0, str(tally)
    assert tally.replays == 12, str(tally)
    for name in ("poor0", "poor1", "poor2", "poor3"):
        assert any(o.status == 402 for o in outcomes if o.job.user == name), name
    # every upstream answer that was completed is one `ok` row, and each such row is
    # an answer a client received in full
    assert tally.upstream_answers == tally.ok_rows == tally.complete, str(tally)
    served_by = {configured(r.instance_id) for r in books.rows("r.status = 'ok'")}
    assert served_by == {"gw-a", "gw-b"}
    assert books.abandoned() == []


@pytest.mark.parametrize(
    ("restart_as", "lease"),
    [
        ("new-instance-id", 3.0),
        # An operator who pins AI_SERVICE_INSTANCE_ID (one id per host or pod) restarts a
        # crashed process under the same id, usually well within the lease.
        ("same-instance-id", 10.0),
    ],
)
def test_sigkill_mid_load_releases_only_the_dead_instances_reservations(
    fresh_db: str, upstream: DirectedOpenAI, spawn: Spawn, restart_as: str, lease: float
) -> None:
    books = Books(fresh_db)
    env = {"AI_SERVICE_INSTANCE_LEASE_SECONDS": lease}
    a = spawn(fresh_db, upstream, "gw-a", start=False, **env)
    b = spawn(fresh_db, upstream, "gw-b", start=False, **env)
    start_all(a, b)
    users = make_users(books)
    jobs = load_jobs(260, users, [lambda: a.url, lambda: b.url], seed=7)
    killed_id = a.instance_id
    new_id = "gw-a2" if restart_as == "new-instance-id" else killed_id

    # slow streams on both instances, certainly in flight when the kill comes
    rich = users[0]
    spanning = [
        Job(n, "slow-drip", rich[0], rich[1], chat_body("slow-drip", n, True), target)
        for n, target in ((new_nonce(), t) for t in [lambda: a.url, lambda: b.url] * 3)
    ]

    async def scenario() -> tuple[list[Outcome], list[str], float]:
        load = asyncio.ensure_future(run_jobs(jobs, concurrency=16, deadline=90, pace=0.02))
        await asyncio.sleep(1.0)
        slow = asyncio.ensure_future(run_jobs(spanning, concurrency=6, deadline=60))
        await asyncio.sleep(0.5)
        a.kill()
        killed = time.monotonic()
        orphans = [r.request_id for r in await asyncio.to_thread(books.pending, killed_id)]
        await asyncio.to_thread(a.start, AI_SERVICE_INSTANCE_ID=new_id)
        restarted = time.monotonic() - killed
        assert restarted < lease or restart_as == "new-instance-id", restarted
        return [*await load, *await slow], orphans, killed

    outcomes, orphans, killed = asyncio.run(scenario())
    assert len(orphans) >= 3, "the kill hit no request in flight; the test proved nothing"
    assert b.alive() and a.alive()

    # the lease passes, then the surviving or restarted instance releases them
    books.wait_settled(max(3.0, lease + 8 - (time.monotonic() - killed)))
    released = books.rows("r.request_id = ANY(:ids)", ids=orphans)
    assert [(r.status, r.cost, r.error) for r in released] == [("error", 0, ABANDONED)] * len(
        orphans
    )
    # nothing of a live instance was touched: only the orphans were released
    assert sorted(r.request_id for r in books.abandoned()) == sorted(orphans)
    assert books.violations() == []

    tally = Tally()
    assert mismatches(outcomes, books, upstream, tally) == [], str(tally)
    # answers the upstream completed are ok rows, except those of requests the kill orphaned
    assert tally.ok_rows <= tally.upstream_answers <= tally.ok_rows + len(orphans), str(tally)
    # the surviving instance served its share throughout
    to_b = [o for o in outcomes if o.base_url == b.url]
    assert to_b and all(o.transport_error is None or o.disconnected for o in to_b)


def configured(instance_id: str | None) -> str:
    """The configured name of a process run's instance id (`name-<run suffix>`)."""
    return (instance_id or "").rsplit("-", 1)[0]
