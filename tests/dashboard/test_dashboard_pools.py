"""The dashboard's pools page in a real headless Chromium: a credential an auth failure took
out is shown disabled with its reason, never its key, and the operator enables it again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.dashboard.conftest import PageProblems, in_browser, screenshot_path
from tests.fakes.behaviours import ErrorReply
from tests.fakes.openai_flavours import FakeOpenAI
from tests.fakes.server import started
from tests.support.gateway import Gateway

ADMIN_KEY = "dashboard-admin-key-0123456789"


@pytest.fixture
def pair() -> Iterator[dict[str, FakeOpenAI]]:
    with started(
        {label: FakeOpenAI(api_key=f"sk-dash-{label}-0123456789") for label in "ab"}
    ) as fakes:
        yield fakes


def test_operator_sees_a_disabled_credential_and_enables_it(
    gateway_factory: Callable[..., Gateway], pair: dict[str, FakeOpenAI]
) -> None:
    pools = [
        {"label": label, "key": fake.api_key, "base_url": fake.base_url, "rpm": 600}
        for label, fake in pair.items()
    ]
    gw = gateway_factory(
        admin_key=ADMIN_KEY, pools={"openai": pools}, credentials_key=Fernet.generate_key().decode()
    )
    key = gw.create_user("alice", "10")
    pair["a"].fail(ErrorReply(401))
    for _ in range(6):  # a's first request disables it (whenever it is chosen)
        r = httpx.post(
            gw.url + "/ai/openai/chat/completions",
            json={"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"X-API-Key": key},
        )
        assert r.status_code == 200
        if pair["a"].requests:
            break
    assert pair["a"].requests
    pair["a"].heal()
    in_browser(lambda page, problems: journey(gw, page, problems))


def journey(gw: Gateway, page: Any, problems: PageProblems) -> None:
    backend = "postgresql" if gw.settings.database_url.startswith("postgresql") else "sqlite"
    base = gw.url + "/ai/admin"
    page.goto(base + "/pools")
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/pools")
    assert page.locator("h1").inner_text() == "Upstream pools"
    row = page.locator("#credentials tr[data-credential='openai/a']")
    assert row.locator(".badge.status").inner_text() == "disabled"
    assert "HTTP 401" in row.locator("td.state").inner_text()
    assert "600" in row.inner_text()
    assert "sk-dash" not in page.content()
    other = page.locator("#credentials tr[data-credential='openai/b']")
    assert other.locator(".badge.status").inner_text() == "in service"
    page.screenshot(path=str(screenshot_path(f"dashboard-{backend}-9-pools")), full_page=True)
    row.locator("button").click()
    page.wait_for_url(base + "/pools?done=enable")
    assert page.get_by_role("status").inner_text() == "Credential back in service."
    row = page.locator("#credentials tr[data-credential='openai/a']")
    assert row.locator(".badge.status").inner_text() == "in service"
    assert row.locator("button").count() == 0  # the settings' credential: no remove either

    # a credential added from the form: its key stored encrypted, never shown again
    form = page.locator("#add-credential")
    form.locator("select[name=provider]").select_option("claude")
    form.locator("input[name=label]").fill("ws-new")
    form.locator("input[name=key]").fill("sk-ant-typed-0123456789")
    form.locator("input[name=rpm]").fill("50")
    form.locator("button").click()
    page.wait_for_url(base + "/pools?done=add")
    added = page.locator("#credentials tr[data-credential='claude/ws-new']")
    assert "stored" in added.inner_text() and "50" in added.inner_text()
    assert "sk-ant-typed" not in page.content()
    added.locator("button", has_text="Remove").click()
    page.wait_for_url(base + "/pools?done=remove")
    assert page.locator("#credentials tr[data-credential='claude/ws-new']").count() == 0
    assert problems == []
