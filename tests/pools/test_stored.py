"""Credentials operators add at run time (admin API): stored encrypted, served at once on
the instance that took them and within seconds on another, removed the same way."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.fakes.openai_flavours import FakeOpenAI
from tests.pools.conftest import ADMIN_KEY, pools_view, post, served, upstream_key
from tests.support.gateway import Gateway

SECRET = Fernet.generate_key().decode()


def admin(
    gw: Gateway, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    return httpx.request(
        method, gw.url + "/ai/admin/api" + path, json=body, headers={"X-Admin-Key": ADMIN_KEY}
    )


def test_a_credential_added_by_the_admin_api_serves_and_its_key_is_never_shown(
    gateway_factory: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    a, b = fakes["a"], fakes["b"]
    # a provider configured the old way: its one key becomes the pool's `default`
    gw = gateway_factory(
        admin_key=ADMIN_KEY,
        credentials_key=SECRET,
        openai_api_key=upstream_key("a"),
        openai_base_url=a.base_url,
    )
    key = gw.create_user("alice", "10")
    body = {"provider": "openai", "label": "b", "key": upstream_key("b"), "weight": 1000}
    r = admin(gw, "POST", "/pools", {**body, "base_url": b.base_url})
    assert r.status_code == 201, r.text
    assert upstream_key("b") not in r.text
    view = pools_view(gw)
    assert [(c["label"], c["source"]) for c in view.values()] == [
        ("default", "environment"),
        ("b", "stored"),
    ]
    assert upstream_key("b") not in str(view)
    stored = gw.scalar("SELECT key_encrypted FROM api_upstream_credentials")
    assert upstream_key("b") not in stored
    assert Fernet(SECRET.encode()).decrypt(stored.encode()).decode() == upstream_key("b")
    for _ in range(5):
        assert post(gw, key).status_code == 200
    assert served(fakes)["b"] >= 4  # weight 1000 against 1
    assert b.last_request.headers["authorization"] == f"Bearer {upstream_key('b')}"
    # the label is taken; a key without the secret is refused elsewhere
    assert admin(gw, "POST", "/pools", body).status_code == 409
    assert admin(gw, "POST", "/pools", {**body, "label": "default"}).status_code == 409
    bad = admin(gw, "POST", "/pools", {**body, "label": "x y"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "label"
    # removed: back to the one key, the pool's state gone with it
    assert admin(gw, "DELETE", "/pools/openai/b").status_code == 200
    assert admin(gw, "DELETE", "/pools/openai/b").status_code == 404
    assert pools_view(gw) == {}
    a.reset()
    assert post(gw, key).status_code == 200
    assert len(a.requests) == 1


def test_a_key_is_stored_only_encrypted(
    gateway_factory: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    gw = gateway_factory(admin_key=ADMIN_KEY)
    body = {"provider": "openai", "label": "b", "key": "sk-plain"}
    r = admin(gw, "POST", "/pools", body)
    assert r.status_code == 400 and "AI_SERVICE_CREDENTIALS_KEY" in r.json()["error"]["message"]
    assert gw.scalar("SELECT count(*) FROM api_upstream_credentials") == 0
    # by a variable's name it needs no secret; unset, the credential is left out (logged)
    named = {"provider": "openai", "label": "c", "key_env": "AI_SERVICE_TEST_UNSET_KEY"}
    assert admin(gw, "POST", "/pools", named).status_code == 201
    assert pools_view(gw) == {}
    assert fakes["c"].requests == []


def test_another_instance_takes_up_a_stored_credential_within_seconds(
    gateway_factory: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    a, c = fakes["a"], fakes["c"]
    settings = {
        "admin_key": ADMIN_KEY,
        "credentials_key": SECRET,
        "pools": {"openai": [{"label": "a", "key": upstream_key("a"), "base_url": a.base_url}]},
    }
    one = gateway_factory(**settings)
    two = gateway_factory(**settings)
    body = {"provider": "openai", "label": "c", "key": upstream_key("c"), "weight": 1000}
    assert admin(one, "POST", "/pools", {**body, "base_url": c.base_url}).status_code == 201
    deadline = time.monotonic() + 10
    while "c" not in pools_view(two):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    key = two.create_user("bob", "10")
    for _ in range(3):
        assert post(two, key).status_code == 200
    assert served(fakes)["c"] >= 2
    assert [row.credential for row in two.requests()].count("c") >= 2
