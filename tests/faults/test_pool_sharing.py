"""Two gateway processes share their pool's credential state through Redis.

What one instance learns (a breaker that opened, a key an auth failure took
out) the other acts on without sending a request of its own to that key; an
operator's enable on one instance puts the key back on both. Every answer is
logged and charged once across both (`Books.violations`).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from redis import Redis

from tests.fakes.behaviours import ErrorReply
from tests.fakes.openai_flavours import FakeOpenAI
from tests.fakes.server import started
from tests.faults.conftest import Spawn
from tests.support.directed import DirectedOpenAI
from tests.support.invariants import Books
from tests.support.processes import GatewayProcess, free_port, gateway_env

REDIS_URL = os.environ.get("AI_SERVICE_TEST_REDIS", "redis://127.0.0.1:6379/0")
ADMIN_KEY = "pool-sharing-admin-key-0123456789"
BODY = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def prefix() -> Iterator[str]:
    try:
        client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.ping()
    except Exception:  # no Redis here: the sharing cannot be tested
        pytest.skip(f"no Redis at {REDIS_URL}")
    found = f"ai-service-test:{uuid.uuid4().hex[:8]}:pool:"
    yield found
    for name in client.scan_iter(found + "*"):
        client.delete(name)
    client.close()


@pytest.fixture
def pair() -> Iterator[dict[str, FakeOpenAI]]:
    with started(
        {label: FakeOpenAI(api_key=f"sk-share-{label}-0123456789") for label in "ab"}
    ) as fakes:
        yield fakes


def start(
    tmp_path: Path, db: str, name: str, fakes: dict[str, FakeOpenAI], prefix: str
) -> GatewayProcess:
    pools = {
        "openai": [
            {
                "label": label,
                "key": fake.api_key,
                "base_url": fake.base_url,
                "weight": 1000 if label == "a" else 1,
            }
            for label, fake in fakes.items()
        ]
    }
    env = gateway_env(
        db,
        name,
        fakes["a"].base_url,
        fakes["a"].api_key,
        AI_SERVICE_POOLS=orjson.dumps(pools).decode(),
        AI_SERVICE_REDIS_URL=REDIS_URL,
        AI_SERVICE_POOL_STATE_PREFIX=prefix,
        AI_SERVICE_POOL_STATE_REFRESH_SECONDS="0.2",
        AI_SERVICE_POOL_BREAKER_FAILURES="2",
        AI_SERVICE_POOL_BREAKER_COOLDOWN_SECONDS="60",
        AI_SERVICE_ADMIN_KEY=ADMIN_KEY,
    )
    return GatewayProcess(env, tmp_path / f"{name}.log", port=free_port(), name=name).start()


def chat(proc: GatewayProcess, key: str) -> int:
    r = httpx.post(proc.url + "/ai/openai/chat/completions", json=BODY, headers={"X-API-Key": key})
    return r.status_code


def state_of(proc: GatewayProcess, label: str) -> dict[str, object]:
    r = httpx.get(proc.url + "/ai/admin/api/pools", headers={"X-Admin-Key": ADMIN_KEY})
    (found,) = [c for c in r.json()["data"] if c["label"] == label]
    return found


def test_two_instances_share_a_breaker_and_a_disabled_key_through_redis(
    fresh_db: str,
    tmp_path: Path,
    pair: dict[str, FakeOpenAI],
    prefix: str,
    spawn: Spawn,  # the suite's fixtures, for the database's lifetime
    upstream: DirectedOpenAI,
) -> None:
    books = Books(fresh_db)
    key = books.create_user("alice", "10")
    one = start(tmp_path, fresh_db, "gw-one", pair, prefix)
    two = start(tmp_path, fresh_db, "gw-two", pair, prefix)
    try:
        # `one` learns that a fails: its breaker opens after two failures
        pair["a"].fail(ErrorReply(500))
        for _ in range(4):
            assert chat(one, key) == 200
        assert len(pair["a"].requests) == 2
        time.sleep(0.4)  # the shared state is read when older than 0.2 s
        # `two` never saw a fail, and sends it nothing
        for _ in range(4):
            assert chat(two, key) == 200
        assert len(pair["a"].requests) == 2
        assert state_of(two, "a")["breaker"] == "open"

        # an auth failure seen by `two` takes b out on `one` too; an enable on `one` brings
        # it back on `two`
        pair["a"].heal()
        pair["b"].fail(ErrorReply(401))
        assert chat(two, key) == 502  # b was the last one able: its rejection is the answer
        time.sleep(0.4)
        assert state_of(one, "b")["status"] == "disabled"
        assert chat(one, key) == 503
        assert [r.status for r in pair["b"].requests].count(401) == 1  # one learnt for both
        pair["b"].heal()
        r = httpx.post(
            one.url + "/ai/admin/api/pools/openai/b/enable", headers={"X-Admin-Key": ADMIN_KEY}
        )
        assert r.status_code == 200
        time.sleep(0.4)
        assert state_of(two, "b")["status"] == "in service"
        assert chat(two, key) == 200
        books.wait_settled(10)
        assert books.violations() == []
        served = books.all("SELECT credential FROM api_requests WHERE status = 'ok'")
        assert {row[0] for row in served} == {"b"}
    finally:
        one.stop()
        two.stop()
