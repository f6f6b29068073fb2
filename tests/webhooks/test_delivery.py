"""Signed webhooks delivered at least once from the outbox, against a real receiver that
verifies each signature with the Standard Webhooks reference library, and that fails,
times out, cuts the connection and is killed mid-delivery."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ai_service.billing.money import usd_to_nano
from ai_service.services import accounts, budget_admin
from ai_service.storage.models import ApiWebhookEvent
from tests.docs.test_examples import examples
from tests.support.gateway import Gateway
from tests.webhooks.conftest import ADMIN_KEY, SECRET
from tests.webhooks.receiver import Receiver


def events(gw: Gateway) -> list[ApiWebhookEvent]:
    async def work(s: Any) -> list[ApiWebhookEvent]:
        return list((await s.scalars(select(ApiWebhookEvent).order_by(ApiWebhookEvent.id))).all())

    return gw.session(work)


def wait_until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def wait_scans(gw: Gateway, count: int = 3, timeout: float = 30) -> None:
    """Wait until the scan ran `count` more times (each renews its lease)."""
    sql = "SELECT expires_at FROM api_leases WHERE name = 'webhooks-scan'"
    seen = [gw.scalar(sql)]
    deadline = time.monotonic() + timeout
    while len(seen) <= count:
        assert time.monotonic() < deadline, "the scan does not run"
        now = gw.scalar(sql)
        if now != seen[-1]:
            seen.append(now)
        time.sleep(0.02)


def low_user(gw: Gateway, name: str = "alice", balance: str = "0.5", below: str = "1") -> None:
    gw.create_user(name, balance)
    gw.session(lambda s: set_threshold(s, name, usd_to_nano(below)))


async def set_threshold(session: Any, name: str, nano: int | None) -> None:
    user = await accounts.get_user(session, name)
    user.low_balance_nano = nano
    await session.commit()


def topup(gw: Gateway, name: str, amount: str) -> None:
    gw.session(lambda s: accounts.topup(s, name, usd_to_nano(amount), "test"))


def admin(gw: Gateway, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, gw.url + "/ai/admin/api" + path, headers={"X-Admin-Key": ADMIN_KEY}, **kwargs
    )


def test_balance_low_is_signed_delivered_once_and_fires_again_only_after_a_top_up(
    hooked: Callable[..., Gateway], receiver: Receiver
) -> None:
    gw = hooked()
    low_user(gw, "alice", balance="0.5", below="1")
    gw.create_user("bob", "5")  # above the threshold of the default (none): never alerted

    (first,) = receiver.wait_for(1)
    assert first.verified
    body = first.payload
    assert body["type"] == "balance.low"
    assert body["id"] == first.event_id == first.headers["webhook-id"]
    assert body["data"] == {"user": "alice", "balance_usd": "0.5", "threshold_usd": "1.0"}
    assert abs(first.timestamp - time.time()) < 30
    assert first.headers["content-type"] == "application/json"
    wait_until(lambda: events(gw)[0].status == "delivered")

    wait_scans(gw)  # the alert stays fired while the balance stays low
    topup(gw, "alice", "0.2")  # still below: the same episode
    wait_scans(gw)
    assert len(receiver.received()) == 1 and len(events(gw)) == 1

    topup(gw, "alice", "1")  # $1.7: above again, which re-arms the alert ...
    wait_scans(gw)
    assert len(events(gw)) == 1
    gw.session(lambda s: set_threshold(s, "alice", usd_to_nano("2")))  # ... $1.7 < $2
    second = receiver.wait_for(2)[1]
    assert second.verified and second.event_id != first.event_id
    assert second.payload["data"]["balance_usd"] == "1.7"
    assert [e.dedup_key for e in events(gw)] == [
        f"balance.low:{e.user_id}:{n}" for n, e in enumerate(events(gw))
    ]


def test_a_receiver_that_fails_then_answers_gets_the_same_event_again(
    hooked: Callable[..., Gateway], receiver: Receiver
) -> None:
    receiver.queue("500", "503")
    gw = hooked()
    low_user(gw)
    attempts = receiver.wait_for(3, accepted=False)
    assert [d.behaviour for d in attempts] == ["500", "503", "ok"]
    assert len({d.event_id for d in attempts}) == 1 and all(d.verified for d in attempts)
    assert len({d.body for d in attempts}) == 1  # the same body, signed anew each time
    wait_until(lambda: events(gw)[0].status == "delivered")
    (row,) = events(gw)
    assert (row.attempts, row.last_status, row.last_error) == (3, 204, None)
    time.sleep(1.0)
    assert len(receiver.received()) == 3  # delivered: never sent again


def test_a_receiver_that_does_not_answer_in_time_is_tried_again(
    hooked: Callable[..., Gateway], receiver: Receiver
) -> None:
    receiver.queue("slow", "drop")
    gw = hooked()
    low_user(gw)
    attempts = receiver.wait_for(3, accepted=False, timeout=30)
    assert [d.behaviour for d in attempts] == ["slow", "drop", "ok"]
    assert len({d.event_id for d in attempts}) == 1
    wait_until(lambda: events(gw)[0].status == "delivered")
    assert events(gw)[0].attempts == 3


def test_an_event_fails_after_its_last_attempt_and_the_operator_retries_it(
    hooked: Callable[..., Gateway], receiver: Receiver
) -> None:
    receiver.queue("500", "500", "500", "500")
    gw = hooked()  # four attempts at most
    low_user(gw)
    wait_until(lambda: bool(events(gw)) and events(gw)[0].status == "failed")
    (row,) = events(gw)
    assert (row.attempts, row.last_status, row.last_error) == (4, 500, "HTTP 500")
    time.sleep(1.0)
    assert len(receiver.received()) == 4

    listed = admin(gw, "GET", "/webhooks/events", params={"status": "failed"}).json()
    assert [e["id"] for e in listed["data"]] == [row.event_id]
    assert listed["data"][0]["summary"] == "balance $0.5 below $1.0"
    retried = admin(gw, "POST", f"/webhooks/events/{row.event_id}/retry")
    # due at once: a worker may deliver it before the answer is read back
    assert retried.status_code == 200 and retried.json()["status"] in ("pending", "delivered")
    receiver.wait_for(1)
    wait_until(lambda: events(gw)[0].status == "delivered")
    assert receiver.received()[-1].event_id == row.event_id
    assert admin(gw, "POST", "/webhooks/events/evt_nope/retry").status_code == 404
    assert admin(gw, "GET", "/webhooks/events", params={"status": "lost"}).status_code == 400


def test_a_receiver_killed_mid_delivery_gets_the_event_once_it_is_back(
    hooked: Callable[..., Gateway], receiver: Receiver
) -> None:
    receiver.queue("hold")
    gw = hooked(webhook_max_attempts=100)
    low_user(gw)
    assert receiver.held.wait(20)
    receiver.stop()  # the connection is cut mid-delivery; nothing listens any more
    # refused connections, retried
    wait_until(lambda: "could not connect" in (events(gw)[0].last_error or ""))
    assert events(gw)[0].status == "pending"
    receiver.start()
    delivered = receiver.wait_for(1)
    assert delivered[0].verified
    wait_until(lambda: events(gw)[0].status == "delivered")
    assert {d.event_id for d in receiver.received()} == {events(gw)[0].event_id}


def test_without_a_webhook_url_nothing_is_scanned_or_sent(
    gateway_factory: Callable[..., Gateway], receiver: Receiver
) -> None:
    gw = gateway_factory(low_balance_alert_usd="100")
    gw.create_user("alice", "1")
    time.sleep(1.0)
    assert events(gw) == [] and receiver.received() == []
    assert gw.state.webhooks is None


def test_a_budget_that_refuses_a_request_sends_its_100_percent_alert(
    hooked: Callable[..., Gateway], receiver: Receiver
) -> None:
    gw = hooked(webhook_scan_seconds=3600)  # no scan after the first: the refusal alone
    key = gw.create_user("alice", "5")
    prefix = key[:12]
    budget = gw.session(
        lambda s: budget_admin.set_budget(s, key_prefix=prefix, period="week", limit=1000)
    )
    ask = lambda: httpx.post(  # noqa: E731
        gw.url + "/ai/openai/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    refused = [ask() for _ in range(3)]
    assert [r.status_code for r in refused] == [402, 402, 402]
    assert "Budget exceeded" in refused[0].json()["error"]["message"]
    (delivery,) = receiver.wait_for(1)
    assert delivery.verified
    data = delivery.payload["data"]
    assert (data["user"], data["threshold"], data["refused"]) == ("alice", 100, True)
    assert data["budget"]["id"] == budget.id and data["budget"]["key_prefix"] == prefix
    assert data["budget"]["limit_usd"] == "0.000001" and data["budget"]["used_usd"] == "0.0"
    time.sleep(1.0)
    assert len(events(gw)) == 1 and len(receiver.received()) == 1


def test_the_verification_in_the_docs_accepts_real_deliveries_and_nothing_else(
    hooked: Callable[..., Gateway], receiver: Receiver
) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
    (example,) = [e for e in examples(docs) if "def verify(" in e.code]
    namespace: dict[str, Any] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(example.code, example.id, "exec"), namespace)  # noqa: S102  # our own docs
    verify = namespace["verify"]
    gw = hooked()
    low_user(gw)
    (delivery,) = receiver.wait_for(1)
    assert verify(SECRET, delivery.headers, delivery.body) == delivery.payload
    for headers, body in (
        (delivery.headers, delivery.body.replace(b"alice", b"alicf")),
        ({**delivery.headers, "webhook-id": "evt_other"}, delivery.body),
        (delivery.headers, delivery.body + b" "),
    ):
        with pytest.raises(ValueError, match="no valid signature"):
            verify(SECRET, headers, body)
    with pytest.raises(ValueError, match="replay"):
        verify(SECRET, delivery.headers, delivery.body, now=time.time() + 600)
    other = "whsec_" + "B" * 32
    with pytest.raises(ValueError, match="no valid signature"):
        verify(other, delivery.headers, delivery.body)
