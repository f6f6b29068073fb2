"""GET /ai/key, /ai/account and /ai/usage: a key holder sees only their own key, balance and
log."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from ai_service.services import accounts, budget_admin
from ai_service.services.limits import set_limits
from tests.conftest import UPSTREAM_KEY
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

CHAT = "/ai/openai/chat/completions"
BODY = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_account_shows_balance_and_spend(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    for _ in range(2):
        assert (
            httpx.post(gateway.url + CHAT, headers={"X-API-Key": key}, json=BODY).status_code == 200
        )
    r = httpx.get(gateway.url + "/ai/account", headers={"X-API-Key": key})
    assert r.status_code == 200
    body = r.json()
    spent = sum(row.cost for row in gateway.requests())
    assert body["user"] == "alice"
    assert body["nano_usd_available"] == 10_000_000_000 - spent
    assert body["spend"]["total_usd"] == body["spend"]["today_usd"] == body["spend"]["month_usd"]
    (model,) = body["models"]
    assert (model["model"], model["requests"]) == ("gpt-5.4-mini", 2)


def test_usage_is_paged_newest_first_and_private(gateway: Gateway) -> None:
    alice = gateway.create_user("alice", "10")
    bob = gateway.create_user("bob", "10")
    for _ in range(5):
        httpx.post(gateway.url + CHAT, headers={"X-API-Key": alice}, json=BODY)
    httpx.post(gateway.url + CHAT, headers={"X-API-Key": bob}, json=BODY)

    first = httpx.get(gateway.url + "/ai/usage?limit=3", headers={"X-API-Key": alice}).json()
    assert len(first["data"]) == 3 and first["has_more"] is True
    ids = [row["id"] for row in first["data"]]
    assert ids == sorted(ids, reverse=True)
    rest = httpx.get(
        gateway.url + f"/ai/usage?limit=3&before={first['next_before']}",
        headers={"X-API-Key": alice},
    ).json()
    assert len(rest["data"]) == 2 and rest["has_more"] is False
    assert len({r["request_id"] for r in first["data"] + rest["data"]}) == 5
    assert all(r["status"] == "ok" for r in first["data"] + rest["data"])
    bobs = httpx.get(gateway.url + "/ai/usage", headers={"X-API-Key": bob}).json()
    assert len(bobs["data"]) == 1


# times whose conversion to UTC (or a day's arithmetic on them) leaves the calendar
OUT_OF_RANGE = [
    ("until", "0001-01-01T00:00:00+14:00"),
    ("since", "9999-12-31T23:59:59-14:00"),
    ("since", "9999-12-31T23:00:00"),
    ("until", "0001-01-01"),
    ("since", "not-a-time"),
]


@pytest.mark.parametrize(("param", "value"), OUT_OF_RANGE)
def test_usage_times_out_of_range_are_400(gateway: Gateway, param: str, value: str) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.get(gateway.url + "/ai/usage", params={param: value}, headers={"X-API-Key": key})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


@pytest.mark.parametrize(
    "since", ["2020-01-01", "2020-01-01T00:00:00+14:00", "2020-01-01T00:00:00Z", "1577836800"]
)
def test_usage_times_in_iso_8601_or_unix_seconds(gateway: Gateway, since: str) -> None:
    key = gateway.create_user("alice", "10")
    assert httpx.post(gateway.url + CHAT, headers={"X-API-Key": key}, json=BODY).status_code == 200
    r = httpx.get(gateway.url + "/ai/usage", params={"since": since}, headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 1
    later = httpx.get(
        gateway.url + "/ai/usage", params={"until": since}, headers={"X-API-Key": key}
    )
    assert later.json()["data"] == []


def test_account_needs_a_key(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/ai/account").status_code == 401
    r = httpx.get(gateway.url + "/ai/usage?limit=0", headers={"X-API-Key": "nope"})
    assert r.status_code == 401


def test_health_and_readiness(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(gateway.url + "/readyz").json()["database"] == "ok"


def test_key_shows_its_user_policy_limits_balance_and_spend(
    gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> None:
    gw = gateway_factory(
        openai_api_key=UPSTREAM_KEY, openai_base_url=openai_upstream.base_url, default_tpm=50_000
    )
    gw.create_user("alice", "10")
    key = gw.create_key(
        "alice", allowed=["openai:gpt-5.4*", "claude:*"], expires="2099-01-01T12:30:00+02:00"
    )
    other = gw.create_key("alice")
    gw.session(lambda s: set_limits(s, key_prefix=key[:12], rpm=30))
    gw.session(lambda s: set_limits(s, user="alice", rpm=0))
    for scope in ({"key_prefix": key[:12]}, {"user_name": "alice"}, {"key_prefix": other[:12]}):
        gw.session(
            lambda s, scope=scope: budget_admin.set_budget(
                s, period="month", limit=5_000_000_000, **scope
            )
        )
    for secret in (key, other):
        assert (
            httpx.post(
                gw.url + CHAT, headers={"X-API-Key": secret}, json=BODY, timeout=30
            ).status_code
            == 200
        )
    gw.wait_settled()
    r = httpx.get(gw.url + "/ai/key", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    key_id = gw.session(lambda s: accounts.get_key(s, key[:12])).id
    (mine,) = gw.requests(key_id=key_id)
    assert data == {
        "object": "key",
        "label": key[:12],
        "prefix": key[:12],
        "name": None,
        "user": "alice",
        "created_at": data["created_at"],
        "expires_at": "2099-01-01T10:30:00+00:00",
        "allowed_models": ["openai:gpt-5.4*", "claude:*"],
        "rate_limits": {
            "key": {"requests_per_minute": 30, "tokens_per_minute": None},
            "user": {"requests_per_minute": None, "tokens_per_minute": 50_000},
        },
        "balance": data["balance"],
        "usage": mine.cost / 1e9,
        "spend": {
            "today_usd": data["spend"]["total_usd"],
            "month_usd": data["spend"]["total_usd"],
            "total_usd": data["spend"]["total_usd"],
        },
        "budgets": data["budgets"],
    }
    # the key's own budget and its user's, with what each used; not the other key's
    budgets = [(b["scope"], b["key_prefix"], b["nano_usd_used"]) for b in data["budgets"]]
    assert budgets == [
        ("key", key[:12], mine.cost),
        ("user", None, gw.requests()[0].cost + mine.cost),
    ]
    assert data["balance"]["nano_usd_available"] == gw.balance("alice")[0]
    assert data["spend"]["total_usd"] != "0" and int(mine.cost) > 0
    unrestricted = httpx.get(gw.url + "/ai/key", headers={"X-API-Key": other}, timeout=30).json()[
        "data"
    ]
    assert unrestricted["allowed_models"] is None and unrestricted["expires_at"] is None
    account = httpx.get(gw.url + "/ai/account", headers={"X-API-Key": key}, timeout=30).json()
    assert account["rate_limits"] == {"requests_per_minute": None, "tokens_per_minute": 50_000}
    assert [b["scope"] for b in account["budgets"]] == ["key", "user"]
    assert httpx.get(gw.url + "/ai/key").status_code == 401
