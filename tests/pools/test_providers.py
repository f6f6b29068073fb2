"""Pools on the other surfaces: Anthropic's Messages API passed through (Anthropic's own
rate-limit headers, its `x-api-key`), the translated chat path, and embeddings."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.fakes.anthropic_messages import FakeAnthropic
from tests.fakes.behaviours import ErrorReply
from tests.fakes.openai_flavours import FakeOpenAI
from tests.fakes.server import started
from tests.support.gateway import Gateway

MODEL = "claude-3-5-sonnet-20241022"
MESSAGE = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def workspaces() -> Iterator[dict[str, FakeAnthropic]]:
    with started(
        {label: FakeAnthropic(api_key=f"sk-ant-{label}-0123456789") for label in "xy"}
    ) as fakes:
        yield fakes


@pytest.fixture
def claude_pool(
    gateway_factory: Callable[..., Gateway], workspaces: dict[str, FakeAnthropic]
) -> Gateway:
    entries = [
        {"label": label, "key": fake.api_key, "base_url": fake.base_url}
        for label, fake in workspaces.items()
    ]
    return gateway_factory(pools={"claude": entries})


def test_anthropic_limits_are_read_from_its_own_headers(
    claude_pool: Gateway, workspaces: dict[str, FakeAnthropic]
) -> None:
    key = claude_pool.create_user("alice", "10")
    for fake in workspaces.values():
        fake.limit(rpm=2)
    headers = {"X-API-Key": key, "anthropic-version": "2023-06-01"}
    url = claude_pool.url + "/ai/claude/v1/messages"
    for _ in range(4):
        r = httpx.post(url, json=MESSAGE, headers=headers)
        assert r.status_code == 200, r.text
    for fake in workspaces.values():  # each workspace's key, two each, none refused
        assert [r.status for r in fake.requests] == [200, 200]
        assert {r.headers["x-api-key"] for r in fake.requests} == {fake.api_key}
    r = httpx.post(url, json=MESSAGE, headers=headers)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 20
    rows = claude_pool.requests(status="ok")
    assert sorted(row.credential for row in rows) == ["x", "x", "y", "y"]


def test_the_chat_path_to_anthropic_moves_a_429(
    claude_pool: Gateway, workspaces: dict[str, FakeAnthropic]
) -> None:
    key = claude_pool.create_user("alice", "10")
    workspaces["x"].fail(ErrorReply(429, retry_after=30))
    workspaces["y"].fail(ErrorReply(529))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    url = claude_pool.url + "/ai/claude/chat/completions"
    r = httpx.post(url, json=body, headers={"X-API-Key": key})
    assert r.status_code in (429, 503)  # both out: blocked, and overloaded
    workspaces["y"].heal()
    r = httpx.post(url, json=body, headers={"X-API-Key": key})
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    (row,) = claude_pool.requests(status="ok")
    assert row.credential == "y"


def test_embeddings_are_sent_with_the_chosen_credential(
    gateway_factory: Callable[..., Gateway],
) -> None:
    with (
        FakeOpenAI(api_key="sk-emb-a-0123456789") as a,
        FakeOpenAI(api_key="sk-emb-b-0123456789") as b,
    ):
        entries = [
            {"label": "a", "key": a.api_key, "base_url": a.base_url, "weight": 1000},
            {"label": "b", "key": b.api_key, "base_url": b.base_url},
        ]
        gw = gateway_factory(pools={"openai": entries})
        key = gw.create_user("alice", "10")
        a.fail(ErrorReply(401))
        r = httpx.post(
            gw.url + "/ai/openai/embeddings",
            json={"model": "text-embedding-3-small", "input": "hello"},
            headers={"X-API-Key": key},
        )
        assert r.status_code == 200, r.text
        assert b.last_request.headers["authorization"] == f"Bearer {b.api_key}"
        (row,) = gw.requests()
        assert row.credential == "b" and row.surface == "embeddings"
