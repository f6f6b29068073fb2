"""The dashboard end to end in a real headless Chromium, against a live gateway.

An operator signs in with the admin key, sees a balance, tops the user up and
sees the new balance, creates a key, uses it for a request through the
gateway (fake upstream), finds the request in the log and opens its payload.
Each page is saved as a screenshot in `test-artifacts/` for a person to look at.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ai_service.api.web import money
from tests.conftest import UPSTREAM_KEY
from tests.dashboard.conftest import PageProblems, in_browser, screenshot_path
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

ADMIN_KEY = "dashboard-admin-key-0123456789"


@pytest.fixture
def admin_gateway(gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI) -> Gateway:
    return gateway_factory(
        admin_key=ADMIN_KEY,
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=openai_upstream.base_url,
    )


def shot(page: Any, name: str, backend: str) -> None:
    page.screenshot(path=str(screenshot_path(f"dashboard-{backend}-{name}")), full_page=True)


def backend_of(gw: Gateway) -> str:
    return "postgresql" if gw.settings.database_url.startswith("postgresql") else "sqlite"


def test_operator_tops_up_creates_key_and_finds_the_request(
    admin_gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    in_browser(
        lambda page, problems: operator_journey(admin_gateway, openai_upstream, page, problems)
    )


def operator_journey(
    gw: Gateway, openai_upstream: FakeOpenAI, page: Any, problems: PageProblems
) -> None:
    backend = backend_of(gw)
    gw.create_user("alice", "10")
    gw.create_user("bob", "3.5")
    base = gw.url + "/ai/admin"

    # signing in: a wrong key is refused, the right one lands on the overview
    page.goto(base + "/")
    assert page.url.startswith(base + "/login")
    shot(page, "1-login", backend)
    page.fill("#key", "not-the-admin-key-at-all")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text() == "That is not the admin key."
    problems.clear()  # the refused sign-in answers 401, which Chromium logs as a console error
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    assert page.locator("h1").inner_text() == "Overview"
    cookie = next(c for c in page.context.cookies() if c["name"] == "ai_service_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ADMIN_KEY not in cookie["value"]

    # users page: balances formatted as money
    page.click("nav >> text=Users")
    row = page.locator("#users tr", has_text="alice")
    assert row.locator(".balance").inner_text() == "$10.00"
    assert page.locator("#users tr", has_text="bob").locator(".balance").inner_text() == "$3.50"
    shot(page, "2-users", backend)

    # top up alice and see the new balance
    row.locator("a").click()
    assert page.locator("#balance").inner_text() == "$10.00"
    page.fill("#topup input[name=amount]", "5.25")
    page.fill("#topup input[name=note]", "e2e top-up")
    page.click("#topup button")
    page.wait_for_url(re.compile(r".*/users/alice\?done=topup$"))
    assert page.locator("#balance").inner_text() == "$15.25"
    assert page.get_by_role("status").inner_text() == "Balance topped up."
    assert gw.balance("alice") == (15_250_000_000, 0)

    # create a key: shown once, then usable through the gateway
    page.fill("#create-key input[name=name]", "e2e laptop")
    page.click("#create-key button")
    secret = page.locator("#new-key").inner_text().strip()
    assert secret.startswith("ais-")
    assert (
        page.locator("#keys tr", has_text="e2e laptop").locator(".badge").inner_text() == "active"
    )
    shot(page, "3-user-new-key", backend)
    page.goto(base + "/users/alice")
    assert page.locator("#new-key").count() == 0
    assert secret not in page.content()

    marker = f"e2e-{uuid.uuid4().hex[:12]}"
    answer = httpx.post(
        gw.url + "/ai/openai/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": marker}]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    gw.wait_settled()
    (row_db,) = gw.requests()
    assert row_db.status == "ok" and row_db.cost > 0

    # the request log, filtered by user, leads to the payloads
    page.click("nav >> text=Requests")
    page.fill("#filters input[name=user]", "alice")
    page.select_option("#filters select[name=status]", "ok")
    page.click("#filters button")
    entries = page.locator("table.log tbody tr")
    assert entries.count() == 1
    assert "gpt-5.4-mini" in entries.first.inner_text()
    shot(page, "4-requests", backend)
    entries.first.locator("a.detail").click()
    page.wait_for_url(re.compile(rf".*/requests/{row_db.request_id}$"))
    assert marker in page.locator("#request-payload").inner_text()
    assert openai_upstream.text in page.locator("#response-payload").inner_text()
    assert secret not in page.content()
    shot(page, "5-request-detail", backend)

    # models and the overview with the request on its charts
    page.click("nav >> text=Models")
    assert page.locator("#models tr", has_text="gpt-5.4-mini").count() >= 1
    shot(page, "6-models", backend)
    page.click("nav >> text=Overview")
    assert page.locator("#kpi-requests").inner_text() == "1"
    page.wait_for_function(
        "Array.from(document.querySelectorAll('canvas[data-chart]'))"
        ".every(c => window.Chart && window.Chart.getChart(c))"
    )
    assert page.locator("text=alice").count() >= 1
    shot(page, "7-overview", backend)

    # signing out ends the session
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/ai/admin/login$"))
    page.goto(base + "/users")
    assert "/ai/admin/login" in page.url
    assert problems == []


def test_operator_sets_sees_and_removes_a_budget(admin_gateway: Gateway) -> None:
    in_browser(lambda page, problems: budget_journey(admin_gateway, page, problems))


def budget_journey(gw: Gateway, page: Any, problems: PageProblems) -> None:
    backend = backend_of(gw)
    key = gw.create_user("alice", "10")
    base = gw.url + "/ai/admin"
    page.goto(base + "/login")
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.goto(base + "/users/alice")
    assert "No budgets" in page.locator("#budgets").inner_text()

    # a key's daily budget, then a request through that key shows in its "used"
    page.select_option("#set-budget select[name=scope]", key[:12])
    page.select_option("#set-budget select[name=period]", "day")
    page.fill("#set-budget input[name=limit]", "2.50")
    page.click("#set-budget button")
    page.wait_for_url(re.compile(r".*/users/alice\?done=budget$"))
    assert page.get_by_role("status").inner_text() == "Budget set."
    row = page.locator("#budgets tbody tr").first
    assert key[:12] in row.inner_text() and "day (UTC)" in row.inner_text()
    assert "$2.50" in row.inner_text()
    answer = httpx.post(
        gw.url + "/ai/openai/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    gw.wait_settled()
    page.reload()
    (spent,) = [r.cost for r in gw.requests()]
    assert spent > 0
    assert page.locator("#budgets tbody tr .used").first.inner_text() == money(spent)
    shot(page, "8-user-budgets", backend)

    # a bad limit is refused on the page, the budget stays as it was
    page.fill("#set-budget input[name=limit]", "1e3")
    page.click("#set-budget button")
    assert "Invalid amount" in page.get_by_role("alert").inner_text()
    problems.clear()  # the refused form answers 400, which Chromium logs as a console error
    assert page.locator("#budgets tbody tr[data-budget]").count() == 1

    # removed
    page.goto(base + "/users/alice")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#budgets tbody tr[data-budget] button").click()
    page.wait_for_url(re.compile(r".*/users/alice\?done=unbudgeted$"))
    assert "No budgets" in page.locator("#budgets").inner_text()
    assert gw.scalar("SELECT count(*) FROM api_budgets") == 0
    assert problems == []


def test_operator_limits_a_key_to_some_models_and_an_expiry(
    admin_gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    in_browser(lambda page, problems: key_policy_journey(admin_gateway, page, problems))


def key_policy_journey(gw: Gateway, page: Any, problems: PageProblems) -> None:
    backend = backend_of(gw)
    gw.create_user("alice", "10")
    base = gw.url + "/ai/admin"
    page.goto(base + "/login")
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.goto(base + "/users/alice")

    # a key for two model families, expiring at the end of the century
    page.fill("#create-key input[name=name]", "limited")
    page.fill("#create-key input[name=allowed]", "openai:gpt-5.4-mini, claude:claude-sonnet-*")
    page.fill("#create-key input[name=expires]", "2099-12-31")
    page.click("#create-key button")
    secret = page.locator("#new-key").inner_text().strip()
    row = page.locator("#keys tr", has_text="limited")
    assert row.locator(".allowed").inner_text() == "openai:gpt-5.4-mini claude:claude-sonnet-*"
    assert "2099-12-31" in row.locator(".expires").inner_text()
    assert row.locator(".badge").inner_text() == "active"
    shot(page, "10-key-policy", backend)

    def chat(model: str) -> int:
        return httpx.post(
            gw.url + "/ai/openai/chat/completions",
            headers={"X-API-Key": secret},
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        ).status_code

    assert chat("gpt-5.4-mini") == 200
    assert chat("gpt-5.4") == 403

    # a pattern naming no provider is refused with its reason, and nothing changes
    row.locator("summary").click()
    row.locator("input[name=allowed]").fill("anthropic:*")
    row.locator("button", has_text="Save").click()
    assert "names no provider" in page.get_by_role("alert").inner_text()
    problems.clear()  # the refused form answers 400, which Chromium logs as a console error
    row = page.locator("#keys tr", has_text="limited")
    assert row.locator(".allowed").inner_text() == "openai:gpt-5.4-mini claude:claude-sonnet-*"

    # widened to every gpt-5.4 model: at once on this instance
    row.locator("summary").click()
    row.locator("input[name=allowed]").fill("openai:gpt-5.4*")
    row.locator("button", has_text="Save").click()
    page.wait_for_url(re.compile(r".*/users/alice\?done=key$"))
    assert page.get_by_role("status").inner_text() == "Key updated."
    row = page.locator("#keys tr", has_text="limited")
    assert row.locator(".allowed").inner_text() == "openai:gpt-5.4*"
    assert "2099-12-31" in row.locator(".expires").inner_text()  # kept as it was
    assert chat("gpt-5.4") == 200

    # cleared: every model, never expires
    row.locator("summary").click()
    row.locator("input[name=allowed]").fill("")
    row.locator("input[name=expires]").fill("")
    row.locator("button", has_text="Save").click()
    page.wait_for_url(re.compile(r".*/users/alice\?done=key$"))
    row = page.locator("#keys tr", has_text="limited")
    assert row.locator(".allowed").inner_text() == "every model"
    assert row.locator(".expires").inner_text() == ""
    shot(page, "11-key-policy-cleared", backend)
    assert problems == []


def test_operator_sets_a_users_low_balance_alert(admin_gateway: Gateway) -> None:
    in_browser(lambda page, problems: alert_journey(admin_gateway, page, problems))


def alert_journey(gw: Gateway, page: Any, problems: PageProblems) -> None:
    gw.create_user("alice", "10")
    base = gw.url + "/ai/admin"
    page.goto(base + "/login")
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.goto(base + "/users/alice")
    assert "No low-balance alert" in page.locator("#low-balance + p").inner_text()

    page.fill("#low-balance input[name=low_balance_usd]", "2.5")
    page.click("#low-balance button")
    page.wait_for_url(re.compile(r".*/users/alice\?done=alerts$"))
    assert page.get_by_role("status").inner_text() == "Low-balance alert set."
    assert "fires below $2.50" in page.locator("#low-balance + p").inner_text()
    assert gw.scalar("SELECT low_balance_nano FROM api_users") == 2_500_000_000
    shot(page, "9-user-alert", backend_of(gw))

    # a bad amount is refused on the page and changes nothing
    page.fill("#low-balance input[name=low_balance_usd]", "1_000")
    page.click("#low-balance button")
    assert "Invalid amount" in page.get_by_role("alert").inner_text()
    problems.clear()  # the refused form answers 400, which Chromium logs as a console error
    assert gw.scalar("SELECT low_balance_nano FROM api_users") == 2_500_000_000

    # emptied: back to the default (none configured here)
    page.goto(base + "/users/alice")
    page.fill("#low-balance input[name=low_balance_usd]", "")
    page.click("#low-balance button")
    page.wait_for_url(re.compile(r".*/users/alice\?done=alerts$"))
    assert gw.scalar("SELECT low_balance_nano FROM api_users") is None
    assert problems == []
