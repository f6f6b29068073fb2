"""Fixtures of the pool tests: three fake upstreams, one key each, and gateways pooling them.

Each fake is a real server on loopback that accepts only its own key, so a
request's credential is the fake that received it. `pooled(...)` starts a
gateway with an OpenAI pool of the three (`a`, `b`, `c`), weights and limits
as given; the books are checked after every test (`gateway_factory`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.openai_flavours import FakeOpenAI
from tests.fakes.server import started
from tests.support.gateway import Gateway
from tests.webhooks.conftest import SECRET
from tests.webhooks.receiver import Receiver

LABELS = ("a", "b", "c")
ADMIN_KEY = "pools-admin-key-0123456789abcdef"
CHAT = "/ai/openai/chat/completions"
BODY = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}


def upstream_key(label: str) -> str:
    return f"sk-pool-{label}-0123456789abcdef"


@pytest.fixture(scope="session")
def pool_fakes() -> Iterator[dict[str, FakeOpenAI]]:
    with started({label: FakeOpenAI(api_key=upstream_key(label)) for label in LABELS}) as fakes:
        yield fakes


@pytest.fixture
def fakes(pool_fakes: dict[str, FakeOpenAI]) -> dict[str, FakeOpenAI]:
    for fake in pool_fakes.values():
        fake.reset()
    return pool_fakes


def entries(fakes: dict[str, FakeOpenAI], **per_label: dict[str, Any]) -> list[dict[str, Any]]:
    """The pool's settings: every fake, with `per_label` options (`a={"weight": 3}`)."""
    return [
        {
            "label": label,
            "key": upstream_key(label),
            "base_url": fake.base_url,
            **per_label.get(label, {}),
        }
        for label, fake in fakes.items()
    ]


@pytest.fixture
def pooled(
    gateway_factory: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> Callable[..., Gateway]:
    def make(per_label: dict[str, dict[str, Any]] | None = None, **overrides: Any) -> Gateway:
        values: dict[str, Any] = {
            "pools": {"openai": entries(fakes, **(per_label or {}))},
            "admin_key": ADMIN_KEY,
            "retry_attempts": 2,
            **overrides,
        }
        return gateway_factory(**values)

    return make


def post(gw: Gateway, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(gw.url + CHAT, json=body or BODY, headers={"X-API-Key": key}, timeout=20)


def served(fakes: dict[str, FakeOpenAI]) -> dict[str, int]:
    """How many requests each fake answered with 200."""
    return {
        label: sum(1 for r in fake.requests if r.status == 200) for label, fake in fakes.items()
    }


def pools_view(gw: Gateway) -> dict[str, dict[str, Any]]:
    r = httpx.get(gw.url + "/ai/admin/api/pools", headers={"X-Admin-Key": ADMIN_KEY})
    assert r.status_code == 200, r.text
    return {c["label"]: c for c in r.json()["data"]}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(SECRET).start()
    yield found
    found.stop()
