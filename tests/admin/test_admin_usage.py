"""Admin API, usage: the request log with filters, request detail with payloads, totals, days."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import httpx
import pytest

from tests.admin.conftest import assert_error, chat
from tests.fakes.behaviours import ErrorReply
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway


def traffic(gw: Gateway, upstream: FakeOpenAI) -> tuple[str, str]:
    """alice: 2 ok + 1 upstream error; bob: 1 ok on another model. Returns both keys."""
    alice = gw.create_user("alice", "10")
    bob = gw.create_user("bob", "10")
    assert chat(gw, alice, "one").status_code == 200
    assert chat(gw, alice, "two").status_code == 200
    upstream.enqueue(ErrorReply(400, message="bad thing"))  # a 4xx is not retried
    assert chat(gw, alice, "three").status_code == 400
    assert chat(gw, bob, "four", model="gpt-5.4-nano").status_code == 200
    gw.wait_settled()
    return alice, bob


def test_request_log_filters_and_pages(
    admin_gateway: Gateway, admin: httpx.Client, openai_upstream: FakeOpenAI
) -> None:
    alice, _ = traffic(admin_gateway, openai_upstream)
    everything = admin.get("/requests").json()
    assert len(everything["data"]) == 4 and everything["has_more"] is False
    assert [r["user"] for r in everything["data"]] == ["bob", "alice", "alice", "alice"]
    assert everything["data"][1]["key_prefix"] == alice[:12]

    def ids(**params: str) -> list[int]:
        r = admin.get("/requests", params=params)
        assert r.status_code == 200, r.text
        return [row["id"] for row in r.json()["data"]]

    assert len(ids(user="alice")) == 3
    assert len(ids(user="alice", status="ok")) == 2
    assert len(ids(status="error")) == 1
    assert len(ids(model="gpt-5.4-nano")) == 1
    assert len(ids(provider="openai")) == 4
    assert ids(provider="claude") == []
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    assert len(ids(since=hour_ago)) == 4
    assert ids(since=tomorrow) == []
    assert len(ids(until=tomorrow)) == 4
    assert ids(until=hour_ago) == []

    first = admin.get("/requests", params={"limit": 3}).json()
    assert first["has_more"] is True and len(first["data"]) == 3
    rest = admin.get("/requests", params={"limit": 3, "before": first["next_before"]}).json()
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    assert_error(admin.get("/requests", params={"user": "nobody"}), 404, "not_found_error")
    assert_error(admin.get("/requests", params={"status": "weird"}), 400, "invalid_request_error")
    assert_error(admin.get("/requests", params={"limit": 0}), 400, "invalid_request_error")
    assert_error(
        admin.get("/requests", params={"since": "yesterday"}), 400, "invalid_request_error"
    )


def test_request_detail_has_the_payloads_without_the_key(
    admin_gateway: Gateway, admin: httpx.Client, openai_upstream: FakeOpenAI
) -> None:
    alice, _ = traffic(admin_gateway, openai_upstream)
    row = next(r for r in admin_gateway.requests() if r.status == "ok")
    r = admin.get(f"/requests/{row.request_id}")
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["request_id"] == row.request_id
    assert detail["user"] == "alice" and detail["cost_nano_usd"] == row.cost
    assert Decimal(detail["cost_usd"]) * 10**9 == row.cost > 0
    assert '"content":"one"' in detail["payload"]["request"].replace(" ", "")
    assert openai_upstream.text in detail["payload"]["response"]
    assert detail["attempts"] >= 1 and detail["finished_at"]
    assert alice not in r.text
    failed = next(r for r in admin_gateway.requests() if r.status == "error")
    detail = admin.get(f"/requests/{failed.request_id}").json()
    assert detail["http_status"] == 400 and "bad thing" in detail["error"]
    assert detail["cost_usd"] == "0.0"
    assert_error(admin.get("/requests/req_nothing"), 404, "not_found_error")


def test_summary_totals_match_the_rows(
    admin_gateway: Gateway, admin: httpx.Client, openai_upstream: FakeOpenAI
) -> None:
    traffic(admin_gateway, openai_upstream)
    rows = admin_gateway.requests()
    summary = admin.get("/usage/summary").json()
    totals = summary["totals"]
    assert totals["requests"] == 4 and totals["ok"] == 3 and totals["errors"] == 1
    assert totals["error_rate"] == 0.25
    assert totals["cost_nano_usd"] == sum(r.cost for r in rows)
    assert totals["prompt_tokens"] == sum(r.prompt_tokens for r in rows)
    (provider,) = summary["by_provider"]
    assert provider["provider"] == "openai" and provider["requests"] == 4
    models = {m["model"]: m for m in summary["by_model"]}
    assert models["gpt-5.4-nano"]["requests"] == 1
    assert models["gpt-5.4-mini"]["requests"] == 3
    users = {u["user"]: u for u in summary["top_users"]}
    assert users["alice"]["errors"] == 1 and users["bob"]["requests"] == 1
    assert sum(u["cost_nano_usd"] for u in users.values()) == totals["cost_nano_usd"]
    only_bob = admin.get("/usage/summary", params={"user": "bob"}).json()
    assert only_bob["totals"]["requests"] == 1
    assert admin.get("/usage/summary", params={"top": 1}).json()["top_users"][0]["user"] in users
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    empty = admin.get("/usage/summary", params={"since": tomorrow}).json()
    assert empty["totals"]["requests"] == 0 and empty["totals"]["cost_usd"] == "0.0"


def test_daily_series_has_every_day_and_groups(
    admin_gateway: Gateway, admin: httpx.Client, openai_upstream: FakeOpenAI
) -> None:
    traffic(admin_gateway, openai_upstream)
    rows = admin_gateway.requests()
    today = dt.datetime.now(dt.UTC).date()
    daily = admin.get("/usage/daily", params={"days": 7}).json()
    days = [d["day"] for d in daily["data"]]
    assert days == [(today - dt.timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    assert [d["requests"] for d in daily["data"]] == [0] * 6 + [4]
    assert daily["data"][-1]["cost_nano_usd"] == sum(r.cost for r in rows)
    assert daily["data"][-1]["errors"] == 1

    by_model = admin.get("/usage/daily", params={"days": 2, "group_by": "model"}).json()
    assert {(d["day"], d["model"], d["requests"]) for d in by_model["data"]} == {
        (today.isoformat(), "gpt-5.4-mini", 3),
        (today.isoformat(), "gpt-5.4-nano", 1),
    }
    by_provider = admin.get("/usage/daily", params={"group_by": "provider"}).json()
    assert [(d["provider"], d["requests"]) for d in by_provider["data"]] == [("openai", 4)]

    since = (today - dt.timedelta(days=2)).isoformat()
    until = (today + dt.timedelta(days=1)).isoformat()
    ranged = admin.get("/usage/daily", params={"since": since, "until": until}).json()
    assert len(ranged["data"]) == 3 and ranged["data"][-1]["requests"] == 4
    assert_error(
        admin.get("/usage/daily", params={"group_by": "user"}), 400, "invalid_request_error"
    )
    assert_error(admin.get("/usage/daily", params={"days": 0}), 400, "invalid_request_error")


@pytest.mark.parametrize("path", ["/requests", "/usage/summary", "/usage/daily"])
@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("until", "0001-01-01T00:00:00+14:00"),
        ("since", "9999-12-31T23:59:59-14:00"),
        ("until", "0001-01-01T00:00:00Z"),  # the daily series reaches back 30 days from it
    ],
)
def test_times_out_of_range_are_400(admin: httpx.Client, path: str, param: str, value: str) -> None:
    assert_error(admin.get(path, params={param: value}), 400, "invalid_request_error", param)
