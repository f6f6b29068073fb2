"""The operator's side of alerts: settings that refuse unsigned or malformed webhooks, the
signature as the Standard Webhooks reference library computes it, a user's own threshold,
the events through the admin API and the CLI, and the metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable

import httpx
import orjson
import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from ai_service.billing.ledger import utcnow
from ai_service.config import Settings
from ai_service.storage.db import make_engine
from ai_service.webhooks import detect, signing
from tests.support.gateway import Gateway
from tests.webhooks.conftest import SECRET
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_delivery import admin, wait_until


def test_the_signature_is_the_reference_librarys() -> None:
    key = signing.secret_key(SECRET)
    body = b'{"id":"evt_1","type":"balance.low"}'
    moment = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)
    stamp = int(moment.timestamp())
    expected = Webhook(SECRET).sign("evt_1", moment, body.decode())
    assert signing.signature(key, "evt_1", stamp, body) == expected
    headers = signing.headers(key, "evt_1", int(utcnow().timestamp()), body)
    assert Webhook(SECRET).verify(body, headers) == orjson.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"low", b"lox"), headers)
    fresh = signing.new_secret()
    assert len(signing.secret_key(fresh)) == 32 and fresh != signing.new_secret()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"webhook_url": "http://127.0.0.1:9/hooks"}, "needs AI_SERVICE_WEBHOOK_SECRET"),
        ({"webhook_url": "ftp://example.com/x", "webhook_secret": SECRET}, "http:// or https://"),
        ({"webhook_secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "'whsec_'"),
        ({"webhook_secret": "whsec_not base64!"}, "not base64"),
        ({"webhook_secret": "whsec_c2hvcnQ="}, "24 to 64 random bytes"),
        ({"low_balance_alert_usd": "1e3"}, "plain decimal"),
        ({"low_balance_alert_usd": "-1"}, "cannot be negative"),
    ],
)
def test_settings_refuse_unsigned_or_malformed_webhooks(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)
    assert Settings(low_balance_alert_usd="2.5").low_balance_alert_nano == 2_500_000_000


def test_a_users_threshold_through_the_admin_api(
    hooked: Callable[..., Gateway], receiver: Receiver
) -> None:
    gw = hooked(low_balance_alert_usd="0.1")
    gw.create_user("alice", "3")
    put = lambda body: admin(gw, "PUT", "/users/alice/alerts", json=body)  # noqa: E731
    assert put({"low_balance_usd": None}).json() == {
        "user": "alice",
        "low_balance_usd": None,
        "default_low_balance_usd": "0.1",
        "applies_usd": "0.1",
    }
    assert put({"low_balance_usd": "0"}).json()["applies_usd"] is None
    assert put({"low_balance_usd": "1e3"}).status_code == 400
    assert (
        admin(gw, "PUT", "/users/nobody/alerts", json={"low_balance_usd": "1"}).status_code == 404
    )
    assert put({"low_balance_usd": "5"}).json()["applies_usd"] == "5.0"

    (delivery,) = receiver.wait_for(1)
    assert delivery.payload["data"]["threshold_usd"] == "5.0"
    detail = admin(gw, "GET", f"/webhooks/events/{delivery.event_id}").json()
    wait_until(
        lambda: (
            admin(gw, "GET", f"/webhooks/events/{delivery.event_id}").json()["status"]
            == "delivered"
        )
    )
    assert detail["payload"] == delivery.payload and detail["user"] == "alice"
    listed = admin(gw, "GET", "/webhooks/events", params={"type": "balance.low", "user": "alice"})
    assert [e["id"] for e in listed.json()["data"]] == [delivery.event_id]
    assert (
        admin(gw, "GET", "/webhooks/events", params={"type": "budget.threshold"}).json()["data"]
        == []
    )
    assert httpx.get(gw.url + "/ai/admin/api/webhooks/events").status_code == 401

    metrics = httpx.get(gw.url + "/metrics").text
    assert 'ai_service_webhook_events_total{type="balance.low"} 1.0' in metrics
    assert 'ai_service_webhook_attempts_total{outcome="delivered"} 1.0' in metrics
    assert "ai_service_webhook_delivery_latency_seconds_count 1.0" in metrics


def test_the_cli_lists_shows_and_retries_events_and_sets_thresholds(db_url: str) -> None:
    env = {**os.environ, "AI_SERVICE_DATABASE_URL": db_url}

    def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "ai_service", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode == 0) == ok, done.stderr
        return done

    secret = cli("webhooks", "secret").stdout.strip()
    assert len(signing.secret_key(secret)) == 32
    cli("users", "create", "carol", "--balance", "0.5")
    assert cli("webhooks", "list").stdout.strip() == "no events"
    shown = orjson.loads(cli("users", "alert", "carol", "--below", "2", "--json").stdout)
    assert (shown["low_balance_usd"], shown["applies_usd"]) == ("2.0", "2.0")
    assert "fires below $2.0 (its own)" in cli("users", "alert", "carol").stdout
    assert (
        "fires never (the default)" in cli("users", "alert", "carol", "--below", "default").stdout
    )
    cli("users", "alert", "carol", "--below", "1")

    async def scan() -> None:
        engine = make_engine(db_url)
        try:
            await detect.scan(engine, None, utcnow())
        finally:
            await engine.dispose()

    asyncio.run(scan())
    (event,) = orjson.loads(cli("webhooks", "list", "--json").stdout)
    assert (event["type"], event["status"], event["user"]) == ("balance.low", "pending", "carol")
    assert event["summary"] in cli("webhooks", "list", "--status", "pending").stdout
    detail = orjson.loads(cli("webhooks", "show", event["id"]).stdout)
    assert detail["payload"]["data"] == {
        "user": "carol",
        "balance_usd": "0.5",
        "threshold_usd": "1.0",
    }
    assert "is due now" in cli("webhooks", "retry", event["id"]).stdout
    missing = cli("webhooks", "retry", "evt_missing", ok=False)
    assert "No webhook event with id 'evt_missing'" in missing.stderr
    bad = cli("webhooks", "list", "--status", "lost", ok=False)
    assert "Unknown status 'lost'" in bad.stderr
