"""Uncollected amounts in the admin API and on the dashboard.

A provider that bills more than the user's whole balance leaves an uncollected
amount; the operator sees it on the request, in the usage totals and on the
dashboard's overview and request pages.
"""

from __future__ import annotations

import httpx

from tests.admin.conftest import ADMIN_KEY, chat
from tests.fakes.behaviours import Answer, Usage
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway


def test_an_unpaid_part_of_a_cost_is_shown_to_the_operator(
    admin_gateway: Gateway, admin: httpx.Client, openai_upstream: FakeOpenAI
) -> None:
    key = admin_gateway.create_user("alice", "0.01")
    openai_upstream.enqueue(Answer(usage=Usage(completion_tokens=10_000_000)))
    assert chat(admin_gateway, key).status_code == 200
    admin_gateway.wait_settled()
    (row,) = admin_gateway.requests()
    assert row.uncollected == row.cost - 10_000_000 > 0
    assert admin_gateway.balance("alice") == (0, 0)

    (listed,) = admin.get("/requests").json()["data"]
    assert listed["uncollected_nano_usd"] == row.uncollected
    detail = admin.get(f"/requests/{row.request_id}").json()
    assert detail["cost_nano_usd"] == row.cost
    assert detail["uncollected_nano_usd"] == row.uncollected
    totals = admin.get("/usage/summary").json()
    assert totals["totals"]["uncollected_nano_usd"] == row.uncollected
    assert totals["top_users"][0]["uncollected_nano_usd"] == row.uncollected
    daily = admin.get("/usage/daily").json()
    assert sum(d["uncollected_nano_usd"] for d in daily["data"]) == row.uncollected

    with httpx.Client(base_url=admin_gateway.url, timeout=30) as browser:
        signed_in = browser.post(
            "/ai/admin/login",
            data={"key": ADMIN_KEY, "next": "/ai/admin/"},
            headers={"Origin": admin_gateway.url},  # as a browser sends it
            follow_redirects=True,
        )
        assert signed_in.status_code == 200
        assert 'id="kpi-uncollected"' in signed_in.text
        page = browser.get(f"/ai/admin/requests/{row.request_id}")
        assert page.status_code == 200
        assert 'id="uncollected"' in page.text
        assert detail["uncollected_usd"] in page.text
