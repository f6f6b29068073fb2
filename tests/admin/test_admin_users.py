"""Admin API, users and keys: create, list, show, top up, disable / enable, keys, revoke."""

from __future__ import annotations

import httpx

from tests.admin.conftest import assert_error, chat
from tests.support.gateway import Gateway


def account(gw: Gateway, key: str) -> httpx.Response:
    return httpx.get(gw.url + "/ai/account", headers={"X-API-Key": key}, timeout=30)


def test_create_user_shows_the_key_once_with_an_exact_opening_balance(
    admin_gateway: Gateway, admin: httpx.Client
) -> None:
    r = admin.post("/users", json={"name": "alice", "balance_usd": "12.345678901"})
    assert r.status_code == 201, r.text
    body = r.json()
    secret = body["key"]["key"]
    assert secret.startswith("ais-") and body["key"]["prefix"] == secret[:12]
    assert body["user"]["usd_available"] == "12.345678901"
    assert body["user"]["nano_usd_available"] == 12_345_678_901
    assert body["user"]["keys"] == [
        {
            "prefix": secret[:12],
            "user": "alice",
            "name": "default",
            "created_at": body["user"]["keys"][0]["created_at"],
            "revoked": False,
            "revoked_at": None,
            "allowed_models": None,
            "expires_at": None,
            "expired": False,
            "rpm_limit": None,
            "tpm_limit": None,
        }
    ]
    assert account(admin_gateway, secret).json()["usd_available"] == "12.345678901"
    # the secret is never shown again
    assert secret not in admin.get("/users/alice").text
    assert secret not in admin.get("/keys").text
    assert admin_gateway.reconcile() == []


def test_create_user_refuses_bad_input(admin: httpx.Client) -> None:
    assert admin.post("/users", json={"name": "bob"}).status_code == 201
    assert_error(admin.post("/users", json={"name": "bob"}), 400, "invalid_request_error", "name")
    assert_error(
        admin.post("/users", json={"name": "carol", "balance_usd": "ten"}),
        400,
        "invalid_request_error",
        "balance_usd",
    )
    assert_error(
        admin.post("/users", json={"name": "carol", "balance_usd": "0.0000000001"}),
        400,
        "invalid_request_error",
        "balance_usd",
    )
    assert_error(
        admin.post("/users", json={"name": "carol", "balance_usd": "-1"}),
        400,
        "invalid_request_error",
        "balance",
    )
    assert_error(
        admin.post("/users", json={"name": "carol", "balance_usd": 1.5}),
        400,
        "invalid_request_error",
        "balance_usd",
    )
    assert_error(admin.post("/users", json={"name": ""}), 400, "invalid_request_error", "name")
    assert_error(admin.post("/users", content=b"{nope"), 400, "invalid_request_error")
    assert [u["name"] for u in admin.get("/users").json()["data"]] == ["bob"]


def test_list_and_show_users(admin_gateway: Gateway, admin: httpx.Client) -> None:
    key = admin_gateway.create_user("bob", "2")
    admin_gateway.create_user("alice", "1.5")
    assert chat(admin_gateway, key).status_code == 200
    admin_gateway.wait_settled()
    listed = admin.get("/users").json()
    assert listed["object"] == "list"
    assert [u["name"] for u in listed["data"]] == ["alice", "bob"]
    assert listed["data"][0]["usd_available"] == "1.5"
    (cost,) = [row.cost for row in admin_gateway.requests()]
    shown = admin.get("/users/bob").json()
    assert shown["nano_usd_available"] == 2_000_000_000 - cost
    assert shown["account"]["requests"] == {"today": 1, "month": 1, "total": 1}
    assert shown["account"]["models"][0]["model"] == "gpt-5.4-mini"
    assert [k["prefix"] for k in shown["keys"]] == [key[:12]]
    assert_error(admin.get("/users/nobody"), 404, "not_found_error")


def test_topup_adds_exactly_through_the_ledger(admin_gateway: Gateway, admin: httpx.Client) -> None:
    admin_gateway.create_user("alice", "1")
    r = admin.post("/users/alice/topup", json={"amount_usd": "0.10", "note": "invoice 7"})
    assert r.status_code == 200, r.text
    assert r.json()["usd_available"] == "1.1"
    assert admin_gateway.balance("alice") == (1_100_000_000, 0)
    assert admin_gateway.scalar("SELECT note FROM api_transactions ORDER BY id DESC LIMIT 1") == (
        "invoice 7"
    )
    assert admin_gateway.reconcile() == []
    for bad in ("0", "-5", "abc", "", "1e3", "1_000", "1E3", "+1", "Infinity"):
        r = admin.post("/users/alice/topup", json={"amount_usd": bad})
        assert_error(r, 400, "invalid_request_error")
    assert_error(admin.post("/users/alice/topup", json={}), 400, "invalid_request_error")
    assert_error(
        admin.post("/users/nobody/topup", json={"amount_usd": "1"}), 404, "not_found_error"
    )
    assert admin_gateway.balance("alice") == (1_100_000_000, 0)


def test_disable_and_enable_take_effect_at_once(
    admin_gateway: Gateway, admin: httpx.Client
) -> None:
    key = admin_gateway.create_user("alice", "1")
    assert account(admin_gateway, key).status_code == 200
    r = admin.post("/users/alice/disable")
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert_error(account(admin_gateway, key), 401, "authentication_error")
    assert_error(chat(admin_gateway, key), 401, "authentication_error")
    r = admin.post("/users/alice/enable")
    assert r.status_code == 200 and r.json()["disabled"] is False
    assert account(admin_gateway, key).status_code == 200
    assert_error(admin.post("/users/nobody/disable"), 404, "not_found_error")


def test_keys_create_list_and_revoke(admin_gateway: Gateway, admin: httpx.Client) -> None:
    first = admin_gateway.create_user("alice", "1")
    admin_gateway.create_user("bob", "1")
    r = admin.post("/users/alice/keys", json={"name": "ci runner"})
    assert r.status_code == 201, r.text
    second = r.json()["key"]
    assert second != first and r.json()["user"] == "alice"
    assert account(admin_gateway, second).json()["user"] == "alice"
    assert admin.post("/users/alice/keys").status_code == 201  # no body: no label

    mine = admin.get("/keys", params={"user": "alice"}).json()["data"]
    assert [(k["prefix"], k["name"]) for k in mine][:2] == [
        (first[:12], "default"),
        (second[:12], "ci runner"),
    ]
    assert len(mine) == 3
    assert len(admin.get("/keys").json()["data"]) == 4
    by_prefix = admin.get("/keys", params={"prefix": second[:10]}).json()["data"]
    assert [k["prefix"] for k in by_prefix] == [second[:12]]
    assert admin.get("/keys", params={"prefix": "zzz"}).json()["data"] == []
    assert_error(admin.get("/keys", params={"user": "nobody"}), 404, "not_found_error")

    r = admin.post(f"/keys/{second[:12]}/revoke")
    assert r.status_code == 200, r.text
    assert r.json()["revoked"] is True and r.json()["user"] == "alice"
    assert_error(account(admin_gateway, second), 401, "authentication_error")
    assert account(admin_gateway, first).status_code == 200
    assert admin.post(f"/keys/{second[:12]}/revoke").json()["revoked"] is True  # idempotent
    assert_error(admin.post("/keys/ais-nothing/revoke"), 404, "not_found_error")
    assert_error(admin.post("/users/nobody/keys"), 404, "not_found_error")
    assert_error(
        admin.post("/users/alice/keys", json={"name": "x" * 201}), 400, "invalid_request_error"
    )
