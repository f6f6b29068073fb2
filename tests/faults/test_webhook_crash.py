"""A gateway process SIGKILLed in the middle of a webhook delivery: the event is not lost.

The receiver holds the first delivery open; its gateway is killed; another
instance finds the event's claim expired (twice the delivery timeout) and
delivers it: the same event, at least once, never a second event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.faults.conftest import Spawn
from tests.support.directed import DirectedOpenAI
from tests.support.invariants import Books
from tests.webhooks.conftest import SECRET
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(SECRET).start()
    yield found
    found.release()
    found.stop()


def test_an_instance_killed_mid_delivery_leaves_the_event_to_another(
    fresh_db: str, upstream: DirectedOpenAI, spawn: Spawn, receiver: Receiver
) -> None:
    books = Books(fresh_db)
    hooks = {
        "AI_SERVICE_WEBHOOK_URL": receiver.url,
        "AI_SERVICE_WEBHOOK_SECRET": SECRET,
        "AI_SERVICE_WEBHOOK_TIMEOUT": "2",
        "AI_SERVICE_WEBHOOK_POLL_SECONDS": "0.1",
        "AI_SERVICE_WEBHOOK_SCAN_SECONDS": "0.2",
        "AI_SERVICE_LOW_BALANCE_ALERT_USD": "1",
    }
    receiver.queue("hold")
    a = spawn(fresh_db, upstream, "gw-a", **hooks)
    books.create_user("alice", "0.25")
    assert receiver.held.wait(30), a.logs()[-3000:]
    held_at = time.monotonic()
    a.kill()
    b = spawn(fresh_db, upstream, "gw-b", **hooks)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if books.scalar("SELECT count(*) FROM api_webhook_events WHERE status = 'delivered'"):
            break
        time.sleep(0.05)
    waited = time.monotonic() - held_at
    first, *later = receiver.received()
    assert later, b.logs()[-3000:]
    assert {d.event_id for d in later} == {first.event_id}
    assert all(d.verified for d in receiver.received())
    assert later[-1].behaviour == "ok" and later[-1].payload == first.payload
    assert waited >= 3.0  # the claim of the killed instance was left to expire (4 s)
    rows = books.all("SELECT event_id, status, attempts FROM api_webhook_events")
    assert [tuple(r) for r in rows] == [(first.event_id, "delivered", 2)]
