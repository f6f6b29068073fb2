"""PostgreSQL stopped and started under load, between two gateway processes (issue 6, item 6).

The gateways reach PostgreSQL through a TCP proxy; "stopping" the database
closes the proxy's listener and resets every connection. While it is down a
new request gets 503 with the OpenAI error body (a prepaid key is never served
unbilled) and `/readyz` says 503; when it is back the same processes serve
again without a restart, requests in flight are settled (retried, never
dropped), and the books balance.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.faults.accounting import Tally, mismatches, ready, start_all, statuses, wait_ready
from tests.faults.conftest import Spawn
from tests.faults.plans import chat_body, load_jobs
from tests.support.directed import DirectedOpenAI, new_nonce
from tests.support.invariants import Books
from tests.support.load import Job, Outcome, run_jobs
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 4.0  # longer than the instances' lease (3 s), as a database restart often is


def test_database_outage_gives_503_then_full_service_and_balanced_books(
    fresh_db: str, upstream: DirectedOpenAI, spawn: Spawn
) -> None:
    books = Books(fresh_db)
    direct = make_url(fresh_db)
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432).open()
    try:
        via_proxy = direct.set(port=proxy.port).render_as_string(hide_password=False)
        a = spawn(via_proxy, upstream, "gw-a", start=False)
        b = spawn(via_proxy, upstream, "gw-b", start=False)
        start_all(a, b)
        pids = (a.proc.pid, b.proc.pid)  # type: ignore[union-attr]
        rich = ("rich", books.create_user("rich", "5"))
        other = ("other", books.create_user("other", "5"))
        late = books.create_user("late", "5")  # first used while the database is down
        jobs = load_jobs(220, [rich, other], [lambda: a.url, lambda: b.url], seed=8)
        # slow streams that are in flight when the database goes away, on both instances:
        # they finish during the outage and must be settled once it is back
        spanning = [
            Job(n, "slow-drip", "rich", rich[1], chat_body("slow-drip", n, True), target)
            for n, target in ((new_nonce(), t) for t in [lambda: a.url, lambda: b.url] * 3)
        ]

        async def scenario() -> tuple[list[Outcome], dict[str, object], float, float]:
            seen: dict[str, object] = {}
            load = asyncio.ensure_future(run_jobs(jobs, concurrency=12, deadline=120, pace=0.035))
            async with httpx.AsyncClient(timeout=10) as client:
                await asyncio.sleep(1.4)
                slow = asyncio.ensure_future(run_jobs(spanning, concurrency=6, deadline=60))
                await asyncio.sleep(0.6)
                await asyncio.to_thread(proxy.stop)
                down = time.monotonic()
                seen["pending_at_down"] = await asyncio.to_thread(books.pending)
                await asyncio.sleep(0.3)
                seen["readyz_down"] = [await ready(client, p) for p in (a, b)]
                r = await client.post(
                    a.url + "/ai/openai/chat/completions",
                    json=chat_body("ok", new_nonce(), False),
                    headers={"X-API-Key": late},
                )
                seen["new_key_down"] = (r.status_code, r.json())
                await asyncio.sleep(max(0.0, down + OUTAGE_SECONDS - time.monotonic()))
                await asyncio.to_thread(proxy.start)
                up = time.monotonic()
                await wait_ready(client, [a, b], timeout=15)
                seen["recovery_seconds"] = time.monotonic() - up
                for proc in (a, b):
                    r = await client.post(
                        proc.url + "/ai/openai/chat/completions",
                        json=chat_body("ok", new_nonce(), False),
                        headers={"X-API-Key": late},
                    )
                    seen.setdefault("after", []).append(r.status_code)  # type: ignore[union-attr]
            return [*await load, *await slow], seen, down, up

        outcomes, seen, down, up = asyncio.run(scenario())
    finally:
        proxy.close()

    # while down: 503 with the OpenAI body, readiness says so
    assert seen["readyz_down"] == [503, 503]
    status, body = seen["new_key_down"]  # type: ignore[misc]
    assert status == 503 and set(body["error"]) == {"message", "type", "param", "code"}, body
    owners = {r.instance_id.rsplit("-", 1)[0] for r in seen["pending_at_down"]}  # type: ignore[attr-defined]
    assert owners == {"gw-a", "gw-b"}
    during = [o for o in outcomes if down + 0.05 < o.started < up - 0.5]
    assert len(during) > 20, "too little load while the database was down"
    wrong = [(o.status, o.text[:80]) for o in during if o.status != 503 or o.error is None]
    assert wrong == [], "requests sent while the database was down must get 503"
    # after: the same processes serve again
    assert seen["after"] == [200, 200]
    assert a.alive() and b.alive() and (a.proc.pid, b.proc.pid) == pids  # type: ignore[union-attr]
    served_after = [o for o in outcomes if o.started > up + float(seen["recovery_seconds"])]  # type: ignore[arg-type]
    assert [o for o in served_after if o.status == 200], statuses(served_after)
    assert all(o.status not in (None, 503) for o in served_after), statuses(served_after)

    # the books: everything settled, nothing released from a live instance, all balanced
    books.wait_settled(20)
    assert books.abandoned() == [], "a live instance's requests were released as abandoned"
    assert books.violations() == []
    tally = Tally()
    assert mismatches(outcomes, books, upstream, tally) == [], str(tally)
    assert tally.transport_errors == 0, statuses(outcomes)
    # (+ 2: the two requests sent after the recovery, outside the load)
    assert tally.upstream_answers == tally.ok_rows == tally.complete + 2, str(tally)


def test_a_reservation_whose_commit_answer_was_lost_is_released(
    fresh_db: str, upstream: DirectedOpenAI, spawn: Spawn
) -> None:
    """The connection dies after PostgreSQL applied the reservation's COMMIT but before the
    gateway heard so. The gateway answers 503, so it must not keep that reservation: the
    request row may not stay `pending` (held by a live instance, no lease ever frees it)."""
    books = Books(fresh_db)
    direct = make_url(fresh_db)
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432).open()
    try:
        via_proxy = direct.set(port=proxy.port).render_as_string(hide_password=False)
        # no heartbeat or lease recovery during the test: only the request commits
        gw = spawn(
            via_proxy,
            upstream,
            "gw-ack",
            AI_SERVICE_HEARTBEAT_SECONDS=60,
            AI_SERVICE_INSTANCE_LEASE_SECONDS=600,
        )
        key = books.create_user("alice", "5")
        with httpx.Client(timeout=20, headers={"X-API-Key": key}) as client:
            chat = gw.url + "/ai/openai/chat/completions"
            assert client.post(chat, json=chat_body("ok", new_nonce(), False)).status_code == 200
            proxy.lose_next_reservation_ack()
            r = client.post(chat, json=chat_body("ok", new_nonce(), False))
        assert proxy.lost_acks == 1
        assert r.status_code == 503
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        # the gateway settles the reservation it may hold as soon as the database answers
        books.wait_settled(10, user="alice")
    finally:
        proxy.close()
    assert books.violations() == []
    spent = sum(row.cost for row in books.rows("r.status = 'ok'"))
    assert books.balance("alice") == (5_000_000_000 - spent, 0)
