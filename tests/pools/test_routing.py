"""Routing over a pool of three credentials, against fakes that enforce their own limits.

Every test ends with the books checked (`gateway_factory`): no request left
pending, none charged twice, every balance equal to its ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.fakes.behaviours import ErrorReply
from tests.fakes.openai_flavours import FakeOpenAI
from tests.pools.conftest import BODY, post, served
from tests.support.gateway import Gateway


def test_traffic_is_spread_by_weight(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    gw = pooled({"a": {"weight": 1}, "b": {"weight": 1}, "c": {"weight": 4}})
    key = gw.create_user("alice", "100")
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: post(gw, key).status_code, range(180)))
    assert codes == [200] * 180
    counts = served(fakes)
    assert sum(counts.values()) == 180
    # expected 30 / 30 / 120; binomial spread well inside these bounds
    assert 12 <= counts["a"] <= 50 and 12 <= counts["b"] <= 50, counts
    assert 95 <= counts["c"] <= 150, counts
    rows = gw.requests()
    assert {row.credential for row in rows} == {"a", "b", "c"}
    by_row = {label: sum(1 for row in rows if row.credential == label) for label in "abc"}
    assert by_row == counts  # each row names the credential that served it


def test_a_429_moves_the_request_to_another_credential(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    gw = pooled({"a": {"weight": 100}, "b": {"weight": 1}, "c": {"weight": 1}})
    key = gw.create_user("alice", "10")
    fakes["a"].fail(ErrorReply(429, retry_after=30))
    for _ in range(10):
        r = post(gw, key)
        assert r.status_code == 200, r.text
    # `a` was asked once: its 429 blocked it for its Retry-After, the request moved on
    assert len(fakes["a"].requests) == 1
    moved = [row for row in gw.requests() if row.attempts == 2]
    assert len(moved) == 1
    assert moved[0].credential in {"b", "c"}
    assert "[a] -> 429" in (moved[0].attempt_log or "")


def test_provider_limits_are_respected_from_their_headers(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    gw = pooled()
    key = gw.create_user("alice", "10")
    for fake in fakes.values():
        fake.limit(rpm=3)
    for _ in range(9):
        assert post(gw, key).status_code == 200
    # each key's headers said how many it had left: none was sent past its limit
    assert served(fakes) == {"a": 3, "b": 3, "c": 3}
    assert all(r.status == 200 for fake in fakes.values() for r in fake.requests)
    # every credential exhausted: 429 with the earliest Retry-After, nothing sent upstream;
    # the providers refill continuously, the whole window in its reset (3 in 60 s: 1 in 20 s)
    r = post(gw, key)
    assert r.status_code == 429
    assert 15 <= int(r.headers["retry-after"]) <= 21
    assert sum(len(fake.requests) for fake in fakes.values()) == 9
    (refused,) = [row for row in gw.requests() if row.status == "error"]
    assert refused.http_status == 429 and refused.cost == 0


def test_a_429_storm_on_every_key_reaches_the_client_once_all_are_exhausted(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    gw = pooled()
    key = gw.create_user("alice", "10")
    for seconds, fake in zip((40, 20, 30), fakes.values(), strict=True):
        fake.fail(ErrorReply(429, retry_after=seconds))
    r = post(gw, key)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "20"  # the earliest of the three
    assert [len(fake.requests) for fake in fakes.values()] == [1, 1, 1]
    assert r.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_short_block_everywhere_is_waited_out_within_the_retry_budget(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    gw = pooled(retry_budget_seconds=5)
    key = gw.create_user("alice", "10")
    for fake in fakes.values():
        fake.enqueue(ErrorReply(429, retry_after=0.3))
    r = post(gw, key)
    assert r.status_code == 200, r.text
    (row,) = gw.requests()
    assert row.attempts == 4  # three 429s, then the first credential free again


def test_a_streamed_request_moves_before_any_byte_reaches_the_client(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    gw = pooled({"a": {"weight": 100}})
    key = gw.create_user("alice", "10")
    fakes["a"].fail(ErrorReply(429, retry_after=30))
    r = post(gw, key, {**BODY, "stream": True})
    assert r.status_code == 200
    assert "error" not in r.text and r.text.rstrip().endswith("data: [DONE]")
    (row,) = gw.requests()
    assert row.status == "ok" and row.credential in {"b", "c"}


def test_the_clients_own_error_is_not_moved(
    pooled: Callable[..., Gateway], fakes: dict[str, FakeOpenAI]
) -> None:
    gw = pooled()
    key = gw.create_user("alice", "10")
    for fake in fakes.values():
        fake.enqueue(ErrorReply(400, "bad field"))
    r = post(gw, key)
    assert r.status_code == 400
    assert sum(len(fake.requests) for fake in fakes.values()) == 1
