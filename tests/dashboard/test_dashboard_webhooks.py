"""The dashboard's webhooks page in a real headless Chromium, against a live gateway whose
alerts go to a receiver on loopback: an event that failed is shown failed with the
receiver's answer, the operator retries it, and it is shown delivered."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.dashboard.conftest import PageProblems, in_browser, screenshot_path
from tests.support.gateway import Gateway
from tests.webhooks.conftest import FAST, SECRET
from tests.webhooks.receiver import Receiver

ADMIN_KEY = "dashboard-admin-key-0123456789"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(SECRET).start()
    yield found
    found.stop()


def test_operator_sees_a_failed_webhook_and_retries_it(
    gateway_factory: Callable[..., Gateway], receiver: Receiver
) -> None:
    receiver.queue("500", "500")
    gw = gateway_factory(
        **{**FAST, "webhook_max_attempts": 2},
        admin_key=ADMIN_KEY,
        webhook_url=receiver.url,
        low_balance_alert_usd="1",
    )
    gw.create_user("alice", "0.5")
    deadline = time.monotonic() + 30
    while gw.scalar("SELECT count(*) FROM api_webhook_events WHERE status = 'failed'") != 1:
        assert time.monotonic() < deadline, receiver.received()
        time.sleep(0.05)
    in_browser(lambda page, problems: journey(gw, receiver, page, problems))


def journey(gw: Gateway, receiver: Receiver, page: Any, problems: PageProblems) -> None:
    backend = "postgresql" if gw.settings.database_url.startswith("postgresql") else "sqlite"
    base = gw.url + "/ai/admin"
    page.goto(base + "/webhooks")
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/webhooks")
    assert page.locator("h1").inner_text() == "Webhooks"
    assert receiver.url in page.locator(".heading").inner_text()
    row = page.locator("#events tr", has_text="balance.low")
    assert row.locator(".badge.status").inner_text() == "failed"
    assert row.locator(".attempts").inner_text() == "2"
    assert "HTTP 500" in row.locator(".last").inner_text()
    assert "balance $0.5 below $1.0" in row.inner_text()
    row.locator("summary").click()
    assert '"type": "balance.low"' in row.locator("pre").inner_text()
    page.screenshot(path=str(screenshot_path(f"dashboard-{backend}-8-webhooks")), full_page=True)

    page.select_option("#filters select[name=status]", "failed")
    page.click("#filters button")
    page.wait_for_url(base + "/webhooks?status=failed&type=&user=")
    assert page.locator("#events tbody tr").count() == 1
    page.locator("#events tr", has_text="balance.low").locator("button").click()
    page.wait_for_url(base + "/webhooks?done=retry")
    assert page.get_by_role("status").inner_text() == "Event queued for delivery."
    deadline = time.monotonic() + 20
    while True:
        page.goto(base + "/webhooks?type=balance.low")
        badge = page.locator("#events tr", has_text="balance.low").locator(".badge.status")
        if badge.inner_text() == "delivered" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert badge.inner_text() == "delivered"
    assert receiver.verified_ids()[-1] == page.locator("#events tr small").first.inner_text()
    assert problems == []
