"""Retries, fallback chains and idempotency keys on the OpenAI path."""

from __future__ import annotations

import httpx
import orjson

from ai_service.billing import ledger, sqlledger
from ai_service.instances import heartbeat, recover
from ai_service.storage.models import ApiInstance
from tests.conftest import UPSTREAM_KEY
from tests.fakes.behaviours import ErrorReply, ResetConnection
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

CHAT = "/ai/openai/chat/completions"
BODY = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}


def post(gw: Gateway, key: str, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(gw.url + CHAT, json=body, headers={"X-API-Key": key, **headers}, timeout=20)


def test_retryable_failures_are_retried_and_charged_once(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    openai_upstream.enqueue(ErrorReply(503), ResetConnection())
    r = post(gateway, key, BODY)
    assert r.status_code == 200
    assert len(openai_upstream.requests) == 3
    (row,) = gateway.requests()
    assert (row.status, row.attempts) == ("ok", 3)
    assert row.attempt_log is not None and row.attempt_log.count("\n") == 2
    charges = gateway.scalar("SELECT count(*) FROM api_transactions WHERE kind = 'charge'")
    assert charges == 1
    assert gateway.reconcile() == []


def test_client_errors_are_never_retried(gateway: Gateway, openai_upstream: FakeOpenAI) -> None:
    key = gateway.create_user("alice", "10")
    for status in (400, 401, 403, 404, 422):
        openai_upstream.reset()
        openai_upstream.enqueue(ErrorReply(status))
        post(gateway, key, BODY)
        assert len(openai_upstream.requests) == 1, status


def test_fallback_chain_serves_with_the_next_model(
    gateway_factory, openai_upstream: FakeOpenAI
) -> None:
    gw = gateway_factory(
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=openai_upstream.base_url,
        retry_attempts=1,
        fallbacks={"openai:gpt-5.4-nano": ["openai:gpt-5.4-mini", "gpt-5.4"]},
    )
    key = gw.create_user("alice", "10")
    openai_upstream.enqueue(ErrorReply(500), ErrorReply(502))
    r = post(gw, key, {**BODY, "model": "gpt-5.4-nano"})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "gpt-5.4-mini"
    assert r.headers["x-served-model"] == "gpt-5.4-mini"
    models = [req.body["model"] for req in openai_upstream.requests]
    assert models == ["gpt-5.4-nano", "gpt-5.4-nano", "gpt-5.4-mini"]
    (row,) = gw.requests()
    assert (row.requested_model, row.model, row.attempts) == ("gpt-5.4-nano", "gpt-5.4-mini", 3)
    assert "gpt-5.4-nano" in (row.attempt_log or "")
    # the reservation was sized for gpt-5.4, the dearest model of the chain
    assert row.reserved > 0
    assert gw.reconcile() == []


def test_fallback_is_not_used_for_client_errors(
    gateway_factory, openai_upstream: FakeOpenAI
) -> None:
    gw = gateway_factory(
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=openai_upstream.base_url,
        fallbacks={"openai:gpt-5.4-nano": ["openai:gpt-5.4-mini"]},
    )
    key = gw.create_user("alice", "10")
    openai_upstream.enqueue(ErrorReply(400, message="bad tool schema"))
    r = post(gw, key, {**BODY, "model": "gpt-5.4-nano"})
    assert r.status_code == 400
    assert len(openai_upstream.requests) == 1


def test_idempotency_key_replays_and_charges_once(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    first = post(gateway, key, BODY, **{"Idempotency-Key": "order-1"})
    second = post(gateway, key, BODY, **{"Idempotency-Key": "order-1"})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert len(openai_upstream.requests) == 1
    assert len(gateway.requests()) == 1
    conflict = post(gateway, key, {**BODY, "temperature": 0.1}, **{"Idempotency-Key": "order-1"})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_key_reused"
    # another user may use the same key for their own request
    other = gateway.create_user("bob", "10")
    assert post(gateway, other, BODY, **{"Idempotency-Key": "order-1"}).status_code == 200
    assert len(openai_upstream.requests) == 2


def test_idempotency_key_is_bound_to_the_provider_path(
    gateway_factory, openai_upstream: FakeOpenAI
) -> None:
    # two providers served by the same fake: only the path differs between the requests
    gw = gateway_factory(
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=openai_upstream.base_url,
        deepseek_api_key=UPSTREAM_KEY,
        deepseek_base_url=openai_upstream.base_url,
        unknown_model_policy="dearest",
    )
    key = gw.create_user("alice", "10")
    headers = {"X-API-Key": key, "Idempotency-Key": "order-1"}
    first = httpx.post(gw.url + CHAT, json=BODY, headers=headers, timeout=20)
    assert first.status_code == 200, first.text
    other = httpx.post(
        gw.url + "/ai/deepseek/chat/completions", json=BODY, headers=headers, timeout=20
    )
    assert other.status_code == 409, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert "idempotent-replayed" not in other.headers
    # the legacy path is the OpenAI path: the same request, replayed
    legacy = httpx.post(gw.url + "/ai/v1/chat/completions", json=BODY, headers=headers, timeout=20)
    assert legacy.headers["idempotent-replayed"] == "true"
    assert legacy.json() == first.json()
    assert len(openai_upstream.requests) == 1
    assert [r.provider for r in gw.requests()] == ["openai"]


def test_idempotent_stream_replays_the_same_frames(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    body = {**BODY, "stream": True}
    first = post(gateway, key, body, **{"Idempotency-Key": "s-1"})
    second = post(gateway, key, body, **{"Idempotency-Key": "s-1"})
    assert first.text == second.text
    assert first.text.endswith("data: [DONE]\n\n")
    assert len(openai_upstream.requests) == 1
    (row,) = gateway.requests()
    assert row.cost > 0


def test_failed_idempotent_request_can_be_retried(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    openai_upstream.enqueue(*[ErrorReply(500)] * 3)
    assert post(gateway, key, BODY, **{"Idempotency-Key": "k"}).status_code == 502
    retried = post(gateway, key, BODY, **{"Idempotency-Key": "k"})
    assert retried.status_code == 200
    assert "idempotent-replayed" not in retried.headers


def test_reservations_of_a_dead_instance_are_released(gateway: Gateway) -> None:
    gateway.create_user("alice", "10")
    user_id = gateway.scalar("SELECT id FROM api_users WHERE name = 'alice'")

    async def strand(instance: str, request_id: str) -> None:
        engine = gateway.state.engine
        await heartbeat(engine, instance)
        async with engine.begin() as conn:
            assert await sqlledger.reserve(conn, user_id, 1_000_000)
            await sqlledger.open_request(
                conn,
                {
                    "request_id": request_id,
                    "user_id": user_id,
                    "provider": "openai",
                    "reserved": 1_000_000,
                    "instance_id": instance,
                },
            )

    gateway.call(strand("dead-instance", "req-dead"))
    gateway.call(strand("live-instance", "req-live"))
    assert gateway.balance("alice") == (10_000_000_000 - 2_000_000, 2_000_000)

    async def age(instance: str) -> None:
        async with gateway.state.engine.begin() as conn:
            await conn.execute(
                ApiInstance.__table__.update()
                .where(ApiInstance.__table__.c.id == instance)
                .values(heartbeat_at=ledger.utcnow().replace(year=2000))
            )
            await conn.execute(
                ledger.REQUESTS.update().values(created_at=ledger.utcnow().replace(year=2000))
            )

    gateway.call(age("dead-instance"))
    released = gateway.call(recover(gateway.state.engine, "me", 30))
    assert released == 1
    assert gateway.balance("alice") == (10_000_000_000 - 1_000_000, 1_000_000)
    dead = gateway.requests(request_id="req-dead")[0]
    assert (dead.status, dead.cost) == ("error", 0)
    assert gateway.requests(request_id="req-live")[0].status == "pending"
    assert gateway.call(recover(gateway.state.engine, "me", 30)) == 0
    # once the live instance dies too, its reservation is released in turn
    gateway.call(age("live-instance"))
    assert gateway.call(recover(gateway.state.engine, "me", 30)) == 1
    assert gateway.balance("alice") == (10_000_000_000, 0)


def test_database_errors_become_503(gateway_factory, openai_upstream: FakeOpenAI, tmp_path) -> None:
    gw = gateway_factory(
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=openai_upstream.base_url,
        database_url=f"sqlite:///{tmp_path}/missing-dir/none.db",
    )
    r = httpx.post(gw.url + CHAT, json=BODY, headers={"X-API-Key": "ais-whatever"})
    assert r.status_code == 503
    assert orjson.loads(r.content)["error"]["type"] == "service_unavailable"
    assert httpx.get(gw.url + "/readyz").status_code == 503
    assert openai_upstream.requests == []
