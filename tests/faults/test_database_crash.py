"""PostgreSQL crashes (SIGKILL) under load between two gateway processes (issue 15).

The test runs a PostgreSQL cluster of its own (initdb in a temporary directory,
a free port): two gateways serve mixed traffic (streamed and not, several
users) while top-ups arrive through the admin API, PostgreSQL is killed with
SIGKILL mid-load, and the cluster is started again (crash recovery from the
WAL). It is killed in two ways: every process at the same instant (a crash of
the machine: the connections are just cut), or the postmaster alone (its
backends then end their sessions with a FATAL error to their clients, as in
any crash or immediate shutdown of the server).

With `AI_SERVICE_BILLING_SYNCHRONOUS_COMMIT=true` nothing acknowledged may be
lost: every answer a client received is in the log and charged once, every
acknowledged top-up is in the ledger, no reservation is left held once the
gateways are back, and reconcile() is empty.

With the opt-out (`false`) a reservation or settlement returns before its WAL
is flushed, so the crash may lose the last moments of them. The test measures
what was lost (answers served but not logged or not charged, top-ups
acknowledged but gone), prints it and records it as properties of the test;
it asserts only that the books are consistent once the gateways have been
restarted (a settlement the crash lost leaves its reservation held by a live
instance, which only a restart releases).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from tests.faults.accounting import Tally, mismatches, start_all, statuses, wait_ready
from tests.faults.conftest import Spawn
from tests.faults.plans import Kind, chat_body, load_jobs
from tests.support.directed import DirectedOpenAI, new_nonce
from tests.support.invariants import Books
from tests.support.load import Job, Outcome, run_jobs
from tests.support.pgcluster import PgCluster
from tests.support.processes import GatewayProcess

pytestmark = pytest.mark.slow

ADMIN_KEY = "crash-admin-key-0123456789abcdef"
TOPUP = "0.01"  # USD, each
TOPUP_NANO = 10_000_000
DOWN_SECONDS = 1.0  # from the kill to the restart of PostgreSQL

# Mostly answers (the operations a crash could lose), streamed and not, some of them
# retried, some hung up on mid-stream, some refused by the upstream.
CRASH_MIX: tuple[Kind, ...] = (
    Kind("ok", 50),
    Kind("drip", 15, stream=True),
    Kind("long-drip", 5, stream=True, disconnect_after=2),
    Kind("burst-recovers", 5),
    Kind("cut", 3, stream=True),
    Kind("upstream-400", 3),
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    made = PgCluster.create()
    if made is None:
        pytest.skip("the PostgreSQL server (initdb, postgres) is not installed")
    try:
        yield made
    finally:
        made.destroy()


@dataclass
class TopUps:
    """The top-ups sent through the admin API, and which of them were acknowledged."""

    sent: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    acknowledged_at: list[float] = field(default_factory=list)  # time.monotonic()
    statuses: list[int | str] = field(default_factory=list)


async def top_up_until(
    stop: asyncio.Event, procs: Sequence[GatewayProcess], users: Sequence[str]
) -> TopUps:
    """Top users up through the admin API, alternating gateways, until `stop` is set."""
    topups = TopUps()
    async with httpx.AsyncClient(timeout=10, headers={"X-Admin-Key": ADMIN_KEY}) as client:
        n = 0
        while not stop.is_set():
            proc, user = procs[n % len(procs)], users[n % len(users)]
            note = f"crash-topup-{n}"
            n += 1
            topups.sent.append(note)
            try:
                r = await client.post(
                    f"{proc.url}/ai/admin/api/users/{user}/topup",
                    json={"amount_usd": TOPUP, "note": note},
                )
            except httpx.HTTPError as exc:
                topups.statuses.append(type(exc).__name__)
            else:
                topups.statuses.append(r.status_code)
                if r.status_code == 200:
                    topups.acknowledged.append(note)
                    topups.acknowledged_at.append(time.monotonic())
            await asyncio.sleep(0.02)
    return topups


def lost_topups(books: Books, topups: TopUps) -> list[str]:
    """Acknowledged top-ups that are not in the ledger exactly once, at their amount."""
    found = {
        note: (int(count), int(total))
        for note, count, total in books.all(
            "SELECT note, count(*), sum(amount) FROM api_transactions"
            " WHERE kind = 'topup' AND note LIKE 'crash-topup-%' GROUP BY note"
        )
    }
    return [n for n in topups.acknowledged if found.get(n) != (1, TOPUP_NANO)]


def lost_answers(outcomes: Sequence[Outcome], books: Books) -> list[str]:
    """Answers clients received (in full, or until they hung up) that are not charged.

    A request's row is matched by the nonce of its stored body; the body is stored
    by the settlement, so an answer is lost here whether the crash took its
    reservation (no row at all) or its settlement (a row without a body, released
    at cost 0 once its gateway restarted).
    """
    rows = books.rows_by_nonce()
    lost = []
    for out in outcomes:
        if out.replayed or not (out.complete or out.disconnected):
            continue
        charged = [
            r for r in rows.get(out.job.nonce, []) if r.status in ("ok", "cancelled") and r.cost > 0
        ]
        if not charged:
            lost.append(out.job.nonce)
    return lost


@pytest.mark.parametrize(
    ("synchronous", "whole_server"),
    [
        pytest.param(True, True, id="synchronous-commit"),
        pytest.param(True, False, id="synchronous-commit-postmaster-killed"),
        pytest.param(False, True, id="opt-out"),
    ],
)
def test_postgres_crash_mid_load(
    cluster: PgCluster,
    upstream: DirectedOpenAI,
    spawn: Spawn,
    synchronous: bool,
    whole_server: bool,
    record_property: Callable[[str, object], None],
) -> None:
    url = cluster.create_database()
    books = Books(url)
    books.price_test_model()
    env = {
        "AI_SERVICE_BILLING_SYNCHRONOUS_COMMIT": "true" if synchronous else "false",
        "AI_SERVICE_ADMIN_KEY": ADMIN_KEY,
    }
    a = spawn(url, upstream, "gw-a", start=False, **env)
    b = spawn(url, upstream, "gw-b", start=False, **env)
    start_all(a, b)
    users = [(f"user{i}", books.create_user(f"user{i}", "1")) for i in range(4)]
    names = [name for name, _ in users]
    targets = [lambda: a.url, lambda: b.url]
    # load through the crash, and load once the gateways are ready again
    before = load_jobs(160, users, targets, seed=15, mix=CRASH_MIX)
    after = load_jobs(60, users, targets, seed=16, mix=CRASH_MIX)
    # slow streams on both gateways, reserved before the crash and finished after it
    name, key = users[0]
    spanning = [
        Job(n, "slow-drip", name, key, chat_body("slow-drip", n, True), target)
        for n, target in ((new_nonce(), t) for t in targets * 3)
    ]

    async def scenario() -> tuple[list[Outcome], TopUps, float, float]:
        stop = asyncio.Event()
        loading = asyncio.ensure_future(run_jobs(before, concurrency=16, deadline=50, pace=0.02))
        topping = asyncio.ensure_future(top_up_until(stop, [a, b], names))
        await asyncio.sleep(1.5)
        slow = asyncio.ensure_future(run_jobs(spanning, concurrency=6, deadline=40))
        await asyncio.sleep(0.6)
        await asyncio.to_thread(cluster.crash, whole_server)
        crashed = time.monotonic()
        await asyncio.sleep(DOWN_SECONDS)
        await asyncio.to_thread(cluster.start)
        async with httpx.AsyncClient(timeout=5) as client:
            await wait_ready(client, [a, b], timeout=20)
        up = time.monotonic()
        later = await run_jobs(after, concurrency=16, deadline=30, pace=0.02)
        outcomes = [*await loading, *await slow, *later]
        stop.set()
        return outcomes, await topping, crashed, up

    outcomes, topups, crashed, up = asyncio.run(scenario())
    assert a.alive() and b.alive()
    print(
        f"crash recovery of PostgreSQL: {cluster.start_seconds:.1f} s; "
        f"gateways ready {up - crashed:.1f} s after the crash"
    )
    # the crash hit the load: answers in flight, top-ups before and after it
    spanned = [o for o in outcomes if o.started < crashed < o.finished]
    assert len(spanned) >= 6, "the crash hit no request in flight; the test proved nothing"
    assert sum(o.complete for o in outcomes if o.finished < crashed) > 10
    assert sum(o.complete for o in outcomes if o.started > up) > 20, statuses(outcomes)
    acked = topups.acknowledged_at
    assert any(t < crashed for t in acked) and any(t > up for t in acked), topups.statuses

    if synchronous:
        # the gateways settle what was in flight as soon as the database is back
        books.wait_settled(20)
        assert books.violations() == []
        assert books.abandoned() == [], "a live instance's requests were released"
        tally = Tally()
        assert mismatches(outcomes, books, upstream, tally) == [], str(tally)
        assert tally.transport_errors == 0, statuses(outcomes)
        assert lost_topups(books, topups) == []
        return

    # the opt-out: a settlement the crash lost leaves its reservation held by a live
    # gateway; restarting the gateways (new instance ids) lets the lease release it
    a.stop()
    b.stop()
    start_all(a, b)
    books.wait_settled(20)
    assert books.violations() == []
    summary = {
        "answered": sum(o.complete or o.disconnected for o in outcomes),
        "answered_in_the_last_second": sum(
            o.complete for o in outcomes if crashed - 1 < o.finished < crashed
        ),
        "answers_lost": len(lost_answers(outcomes, books)),
        "reservations_held_until_restart": len(books.abandoned()),
        "settlements_without_reservation": (a.logs() + b.logs()).count(
            "no longer pending at settlement"
        ),
        "topups_acknowledged": len(topups.acknowledged),
        "topups_lost": len(lost_topups(books, topups)),
    }
    for prop, value in summary.items():
        record_property(prop, value)
    print("synchronous_commit=off crash:", summary)
