"""The health of a pool's credentials: breakers, auth failures, operators putting keys back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
from prometheus_client import generate_latest

from tests.fakes.behaviours import Answer, ErrorReply
from tests.fakes.openai_flavours import FakeOpenAI
from tests.pools.conftest import ADMIN_KEY, BODY, CHAT, pools_view, post, served
from tests.support.gateway import Gateway
from tests.webhooks.conftest import FAST
from tests.webhooks.receiver import Receiver


def enable(gw: Gateway, label: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/ai/admin/api/pools/openai/{label}/enable", headers={"X-Admin-Key": ADMIN_KEY}
    )


def test_a_failing_credentials_breaker_opens_then_closes_after_a_good_trial(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    gw = pooled(
        {"a": {"weight": 100}},
        pool_breaker_failures=2,
        pool_breaker_cooldown_seconds=5.0,  # the 8 requests fit in it on a loaded machine
    )
    key = gw.create_user("alice", "10")
    fakes["a"].fail(ErrorReply(500))
    for _ in range(8):
        assert post(gw, key).status_code == 200  # each failure moved to b or c
    assert len(fakes["a"].requests) == 2  # then its breaker opened: no more sent to it
    view = pools_view(gw)["a"]
    assert (view["breaker"], view["status"], view["errors"]) == ("open", "breaker open", 2)
    metrics = generate_latest(gw.state.metrics.registry).decode()  # what /metrics renders
    assert (
        'ai_service_upstream_credential_breaker_state{credential="a",provider="openai"} 2.0'
        in metrics
    )
    # the provider recovers; after the cooldown one trial goes through and closes it
    fakes["a"].heal()
    time.sleep(5.1)
    for _ in range(6):
        assert post(gw, key).status_code == 200
    assert served(fakes)["a"] >= 4
    assert pools_view(gw)["a"]["breaker"] == "closed"


def test_a_failed_trial_opens_the_breaker_again(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    # a cooldown long enough that the steps after the trial fit in it on a loaded machine
    gw = pooled({"a": {"weight": 100}}, pool_breaker_failures=1, pool_breaker_cooldown_seconds=4)
    key = gw.create_user("alice", "10")
    fakes["a"].fail(ErrorReply(503))
    assert post(gw, key).status_code == 200
    time.sleep(4.1)
    assert post(gw, key).status_code == 200  # the trial failed and moved on
    assert len(fakes["a"].requests) == 2
    assert pools_view(gw)["a"]["breaker"] == "open"  # open again for another cooldown
    assert post(gw, key).status_code == 200
    assert len(fakes["a"].requests) == 2


def test_an_auth_failure_disables_the_credential_until_an_operator_enables_it(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI], receiver: Receiver
) -> None:
    gw = pooled({"a": {"weight": 100}}, webhook_url=receiver.url, **FAST)
    key = gw.create_user("alice", "10")
    fakes["a"].fail(ErrorReply(401))
    for _ in range(5):
        assert post(gw, key).status_code == 200
    assert len(fakes["a"].requests) == 1
    view = pools_view(gw)["a"]
    assert view["status"] == "disabled"
    assert "401" in view["disabled_reason"]
    assert "sk-pool" not in str(pools_view(gw))  # keys are never shown
    (delivery,) = receiver.wait_for(1)
    assert delivery.payload["type"] == "credential.disabled"
    assert delivery.payload["data"]["credential"] == "a"
    assert delivery.payload["data"]["provider"] == "openai"
    listed = httpx.get(
        gw.url + "/ai/admin/api/webhooks/events", headers={"X-Admin-Key": ADMIN_KEY}
    ).json()["data"]
    assert [e["summary"] for e in listed] == [
        "openai credential a disabled: the provider answered HTTP 401"
    ]
    # no cooldown brings it back: still disabled a while later
    time.sleep(0.3)
    for _ in range(3):
        post(gw, key)
    assert len(fakes["a"].requests) == 1
    fakes["a"].heal()
    r = enable(gw, "a")
    assert r.status_code == 200 and r.json()["status"] == "in service"
    for _ in range(4):
        assert post(gw, key).status_code == 200
    assert served(fakes)["a"] >= 2
    assert enable(gw, "zzz").status_code == 404


def test_every_credential_disabled_answers_503_without_calling_upstream(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    gw = pooled()
    key = gw.create_user("alice", "10")
    for fake in fakes.values():
        fake.fail(ErrorReply(403))
    r = post(gw, key)
    assert r.status_code == 502  # the last one's rejection; all three are out now
    assert "sk-pool" not in r.text
    r = post(gw, key)
    assert r.status_code == 503
    assert "disabled" in r.json()["error"]["message"]
    assert sum(len(f.requests) for f in fakes.values()) == 3
    assert {row.cost for row in gw.requests()} == {0}


def test_a_key_disabled_mid_stream_lets_the_stream_finish(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    gw = pooled({"a": {"weight": 1000}})
    key = gw.create_user("alice", "10")
    fakes["a"].enqueue(Answer(chunk_delay=0.15), ErrorReply(401))
    result: dict[str, httpx.Response] = {}
    streaming = threading.Thread(
        target=lambda: result.update(stream=post(gw, key, {**BODY, "stream": True}))
    )
    streaming.start()
    while not fakes["a"].requests:
        time.sleep(0.01)
    r = post(gw, key)  # a's 401 disables it while its stream runs; this one moves on
    assert r.status_code == 200
    streaming.join(10)
    stream = result["stream"]
    assert stream.status_code == 200 and stream.text.rstrip().endswith("data: [DONE]")
    assert "error" not in stream.text
    assert pools_view(gw)["a"]["status"] == "disabled"
    rows = {row.credential: row for row in gw.requests()}
    assert rows["a"].status == "ok" and rows["a"].stream
    assert rows["a"].completion_tokens > 0


def test_a_client_gone_mid_stream_on_a_pooled_credential_is_settled_once(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    gw = pooled({"a": {"weight": 1000}})
    key = gw.create_user("alice", "10")
    fakes["a"].enqueue(Answer(chunk_delay=0.3))
    with httpx.stream(
        "POST", gw.url + CHAT, json={**BODY, "stream": True}, headers={"X-API-Key": key}
    ) as r:
        assert r.status_code == 200
        next(r.iter_lines())  # the first chunk, then the client leaves
    gw.wait_settled(5)
    (row,) = gw.requests()
    assert (row.status, row.credential) == ("cancelled", "a")
    assert post(gw, key).status_code == 200  # the pool serves on
    assert pools_view(gw)["a"]["breaker"] == "closed"
