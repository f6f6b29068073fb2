"""Admin API, a key's allow-list and expiry: set at creation, shown, changed, checked."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import pytest

from tests.admin.conftest import assert_error, chat
from tests.support.gateway import Gateway


def test_a_key_is_created_with_an_allow_list_and_expiry(
    admin_gateway: Gateway, admin: httpx.Client
) -> None:
    admin_gateway.create_user("alice", "10")
    r = admin.post(
        "/users/alice/keys",
        json={
            "name": "ci",
            "allowed_models": [" openai:gpt-5.4* ", "claude:*", "openai:gpt-5.4*"],
            "expires_at": "2099-06-30",
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["key"]
    assert created["prefix"] == secret[:12] and created["user"] == "alice"
    # stripped, repeats dropped, a date is its midnight UTC
    assert created["allowed_models"] == ["openai:gpt-5.4*", "claude:*"]
    assert created["expires_at"] == "2099-06-30T00:00:00+00:00"
    assert created["expired"] is False
    assert admin.get(f"/keys/{secret[:12]}").json() == {
        k: v for k, v in created.items() if k != "key"
    }
    assert chat(admin_gateway, secret).status_code == 200
    assert chat(admin_gateway, secret, model="gpt-4o").status_code == 403  # an alias


def test_patch_changes_what_it_names_and_applies_at_once(
    admin_gateway: Gateway, admin: httpx.Client
) -> None:
    key = admin_gateway.create_user("alice", "10")
    prefix = key[:12]
    r = admin.patch(f"/keys/{prefix}", json={"allowed_models": ["claude:*"]})
    assert r.status_code == 200, r.text
    assert (r.json()["allowed_models"], r.json()["expires_at"]) == (["claude:*"], None)
    assert chat(admin_gateway, key).status_code == 403
    r = admin.patch(f"/keys/{prefix}", json={"expires_at": "4102444800"})  # Unix seconds
    assert r.json()["expires_at"] == "2100-01-01T00:00:00+00:00"
    assert r.json()["allowed_models"] == ["claude:*"]  # left out: kept
    r = admin.patch(f"/keys/{prefix}", json={"allowed_models": None})  # null: every model
    assert r.json()["allowed_models"] is None
    assert r.json()["expires_at"] == "2100-01-01T00:00:00+00:00"
    assert chat(admin_gateway, key).status_code == 200
    assert admin.patch(f"/keys/{prefix}", json={"expires_at": None}).json()["expires_at"] is None
    listed = admin.get("/keys", params={"user": "alice"}).json()["data"]
    assert listed[0]["allowed_models"] is None and listed[0]["expires_at"] is None


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"allowed_models": []}, "allowed_models", "non-empty"),
        ({"allowed_models": ["gpt-4.1"]}, "allowed_models", "PROVIDER:MODEL"),
        ({"allowed_models": ["openai:"]}, "allowed_models", "PROVIDER:MODEL"),
        ({"allowed_models": [":gpt-4.1"]}, "allowed_models", "PROVIDER:MODEL"),
        ({"allowed_models": ["anthropic:*"]}, "allowed_models", "names no provider"),
        ({"allowed_models": ["openai:gpt 4"]}, "allowed_models", "without spaces"),
        ({"allowed_models": ["openai:*"] * 101}, "allowed_models", "at most 100"),
        ({"allowed_models": "openai:*"}, "allowed_models", "valid list"),
        ({"expires_at": "2001-01-01"}, "expires_at", "has passed"),
        ({"expires_at": "soon"}, "expires_at", "not a time"),
        ({"expires_at": "0001-01-01T00:00:00+14:00"}, "expires_at", "out of range"),
    ],
)
def test_a_bad_allow_list_or_expiry_is_400_and_changes_nothing(
    admin_gateway: Gateway, admin: httpx.Client, body: dict[str, object], param: str, words: str
) -> None:
    key = admin_gateway.create_user("alice", "10")
    admin.patch(f"/keys/{key[:12]}", json={"allowed_models": ["openai:*"]})
    for r in (
        admin.patch(
            f"/keys/{key[:12]}",
            json={**body, "allowed_models": body.get("allowed_models", ["claude:*"])},
        ),
        admin.post("/users/alice/keys", json=body),
    ):
        assert_error(r, 400, "invalid_request_error", param)
        assert words in r.json()["error"]["message"]
    shown = admin.get(f"/keys/{key[:12]}").json()
    assert (shown["allowed_models"], shown["expires_at"]) == (["openai:*"], None)
    assert len(admin.get("/keys").json()["data"]) == 1


def test_an_expired_key_keeps_its_expiry_when_its_list_changes(
    admin_gateway: Gateway, admin: httpx.Client
) -> None:
    key = admin_gateway.create_user("alice", "10")
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    admin.patch(f"/keys/{key[:12]}", json={"expires_at": soon.isoformat()})
    shown = admin.get(f"/keys/{key[:12]}").json()
    while not shown["expired"]:
        time.sleep(0.05)
        shown = admin.get(f"/keys/{key[:12]}").json()
    assert chat(admin_gateway, key).json()["error"]["code"] == "key_expired"
    # the form the dashboard sends: both fields, the expiry unchanged
    r = admin.patch(
        f"/keys/{key[:12]}",
        json={"allowed_models": ["openai:*"], "expires_at": shown["expires_at"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["expired"] is True and r.json()["allowed_models"] == ["openai:*"]


def test_unknown_keys_are_404(admin: httpx.Client) -> None:
    assert_error(admin.get("/keys/ais-nothing"), 404, "not_found_error")
    assert_error(admin.patch("/keys/ais-nothing", json={}), 404, "not_found_error")
