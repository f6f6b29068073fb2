"""The operator's CLI against a real SQLite database, as an operator runs it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ai_service.storage.models import ApiRequest, ApiUser
from tests.support.invariants import Books


@pytest.fixture
def cli(tmp_path: Path, db_url: str):
    env = {**os.environ, "AI_SERVICE_DATABASE_URL": db_url}

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "ai_service", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    return run


def test_users_keys_topup_and_usage(cli) -> None:
    created = cli("users", "create", "carol", "--balance", "12.5")
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("ais-") and len(key) > 40

    shown = orjson.loads(cli("users", "show", "carol", "--json").stdout)
    assert shown["usd_available"] == "12.5"
    assert shown["keys"][0]["prefix"] == key[:12]

    cli("users", "topup", "carol", "--amount", "0.25")
    shown = orjson.loads(cli("users", "show", "carol", "--json").stdout)
    assert shown["usd_available"] == "12.75"

    listed = orjson.loads(cli("users", "list", "--json").stdout)
    assert [u["name"] for u in listed] == ["carol"]

    second = cli("keys", "create", "carol").stdout.strip().splitlines()[-1]
    assert second != key
    cli("keys", "revoke", second[:12])
    keys = orjson.loads(cli("keys", "list", "--user", "carol", "--json").stdout)
    assert [k["revoked"] for k in keys] == [False, True]

    cli("users", "disable", "carol")
    assert orjson.loads(cli("users", "show", "carol", "--json").stdout)["disabled"] is True

    assert orjson.loads(cli("usage", "carol", "--json").stdout) == []


def test_models_list_and_set_price(cli) -> None:
    rows = orjson.loads(cli("models", "list", "--provider", "openai", "--json").stdout)
    ids = {r["model"] for r in rows}
    for required in (
        "gpt-5.4",
        "gpt-5.4-mini",
        "gpt-5.4-nano",
        "gpt-5-mini",
        "gpt-4o",
        "gpt-4o-mini",
    ):
        assert required in ids
    alias = next(r for r in rows if r["model"] == "gpt-4o" and r["alias_of"])
    assert alias["alias_of"] == "gpt-5.4-mini"
    priced = [r for r in rows if not r["alias_of"]]
    assert all(r["source"].startswith("genai-prices") for r in priced)
    assert not any("checked" in key for r in rows for key in r)

    cli("models", "set-price", "openai", "gpt-5.4-mini", "--input", "1.25", "--output", "5")
    rows = orjson.loads(cli("models", "list", "--provider", "openai", "--json").stdout)
    mini = next(r for r in rows if r["model"] == "gpt-5.4-mini")
    assert (mini["input_per_million"], mini["output_per_million"]) == ("1.25", "5")
    assert mini["source"] == "override"


def test_errors_are_clear_and_nonzero(cli) -> None:
    result = cli("users", "show", "nobody", ok=False)
    assert result.returncode == 1
    assert "No user named 'nobody'" in result.stderr
    result = cli("users", "create", "dave", "--balance", "ten", ok=False)
    assert result.returncode == 2
    cli("users", "create", "erin")
    result = cli("users", "create", "erin", ok=False)
    assert "exists already" in result.stderr
    result = cli("users", "topup", "erin", "--amount", "-1", ok=False)
    assert result.returncode == 1


def test_db_upgrade_on_an_empty_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {**os.environ, "AI_SERVICE_DATABASE_URL": url}
    result = subprocess.run(
        [sys.executable, "-m", "ai_service", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "ai_service", "models", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    providers = {r["provider"] for r in orjson.loads(listed.stdout)}
    assert providers == {"openai", "claude", "mistral", "llama", "deepseek"}


def test_rate_limits_of_users_and_keys(cli) -> None:
    key = cli("users", "create", "frank").stdout.strip().splitlines()[-1]
    shown = orjson.loads(cli("users", "limits", "frank", "--json").stdout)
    assert (shown["rpm"], shown["tpm"]) == (None, None)
    cli("users", "limits", "frank", "--rpm", "60", "--tpm", "100000")
    cli("keys", "limits", key[:12], "--rpm", "5")
    user = orjson.loads(cli("users", "limits", "frank", "--json").stdout)
    assert (user["rpm"], user["tpm"]) == (60, 100000)
    cleared = orjson.loads(cli("users", "limits", "frank", "--tpm", "none", "--json").stdout)
    assert (cleared["rpm"], cleared["tpm"]) == (60, None)
    assert orjson.loads(cli("keys", "limits", key[:12], "--json").stdout)["rpm"] == 5
    assert cli("users", "limits", "frank", "--rpm", "lots", ok=False).returncode == 2


def test_keys_with_an_allow_list_and_expiry(cli) -> None:
    cli("users", "create", "gina")
    created = cli(
        "keys",
        "create",
        "gina",
        "--allow",
        "openai:*",
        "--allow",
        "claude:claude-sonnet-*",
        "--expires",
        "2099-01-01",
    )
    prefix = created.stdout.strip().splitlines()[-1][:12]
    line = cli("keys", "show", prefix).stdout
    assert f"{prefix}  gina" in line and "allows openai:*,claude:claude-sonnet-*" in line
    assert "expires 2099-01-01T00:00:00+00:00" in line

    changed = orjson.loads(cli("keys", "update", prefix, "--allow", "*:gpt-4.1*", "--json").stdout)
    assert changed["allowed_models"] == ["*:gpt-4.1*"]
    assert changed["expires_at"] == "2099-01-01T00:00:00+00:00"  # not named: kept
    cleared = orjson.loads(
        cli("keys", "update", prefix, "--allow-all", "--no-expiry", "--json").stdout
    )
    assert (cleared["allowed_models"], cleared["expires_at"]) == (None, None)

    refused = cli("keys", "update", prefix, "--allow", "anthropic:*", ok=False)
    assert refused.returncode == 1 and "names no provider" in refused.stderr
    clash = cli("keys", "update", prefix, "--allow", "openai:*", "--allow-all", ok=False)
    assert clash.returncode == 2


def test_models_sync_loads_a_newer_price_data_file(cli, tmp_path: Path) -> None:
    model = {
        "id": "gpt-5.4-mini",
        "match": {"equals": "gpt-5.4-mini"},
        "prices": {"input_mtok": "1.5", "output_mtok": "9"},
    }
    providers = ["openai", "anthropic", "mistral", "together", "deepseek"]
    data = [
        {"id": p, "name": p, "api_pattern": p, "models": [model] if p == "openai" else []}
        for p in providers
    ]
    path = tmp_path / "data.json"
    path.write_text(orjson.dumps(data).decode())
    result = cli("models", "sync", "--file", str(path))
    assert "price data #1 loaded from data.json" in result.stdout
    rows = orjson.loads(cli("models", "list", "--provider", "openai", "--json").stdout)
    mini = next(r for r in rows if r["model"] == "gpt-5.4-mini" and not r["alias_of"])
    assert (mini["input_per_million"], mini["output_per_million"]) == ("1.5", "9")
    assert mini["source"].startswith("price data #1")
    assert next(r for r in rows if r["model"] == "gpt-5.4")["retired"] is True

    path.write_text("[]")
    result = cli("models", "sync", "--file", str(path), ok=False)
    assert result.returncode == 2 and "no providers" in result.stderr


def test_db_reconcile_checks_the_books(cli, db_url: str) -> None:
    cli("users", "create", "gina", "--balance", "3")
    cli("users", "create", "hank", "--balance", "1")
    cli("users", "topup", "hank", "--amount", "0.5")
    result = cli("db", "reconcile")
    assert "the books of 2 user(s) balance; 0 request(s) pending" in result.stdout

    # a balance changed outside the ledger (a bad restore, a manual UPDATE) is reported
    Books(db_url).scalar(
        "UPDATE api_users SET usd_available = usd_available + 7 WHERE name = 'hank' RETURNING id"
    )
    result = cli("db", "reconcile", ok=False)
    assert result.returncode == 1
    assert "do NOT balance" in result.stdout
    assert [line.split(":")[0] for line in result.stdout.splitlines()[:-1]] == ["hank"]
    report = orjson.loads(cli("db", "reconcile", "--json", ok=False).stdout)
    (found,) = report["discrepancies"]
    assert found["user"] == "hank"
    assert found["cached_balance"] - found["ledger_balance"] == 7


def test_budgets_of_users_and_keys(cli) -> None:
    key = cli("users", "create", "dora", "--balance", "5").stdout.strip().splitlines()[-1]
    made = orjson.loads(
        cli(
            "budgets", "set", "--user", "dora", "--period", "month", "--limit", "20", "--json"
        ).stdout
    )
    assert (made["scope"], made["period"], made["limit_usd"]) == ("user", "month", "20.0")
    assert made["resets_at"] is not None
    line = cli(
        "budgets", "set", "--key", key[:12], "--period", "day", "--rolling", "--limit", "1.5"
    )
    assert f"key {key[:12]}" in line.stdout and "rolling day" in line.stdout
    again = orjson.loads(
        cli(
            "budgets", "set", "--user", "dora", "--period", "month", "--limit", "30", "--json"
        ).stdout
    )
    assert again["id"] == made["id"] and again["limit_usd"] == "30.0"  # changed, not added
    listed = orjson.loads(cli("budgets", "list", "dora", "--json").stdout)
    assert [(b["scope"], b["nano_usd_used"]) for b in listed] == [("user", 0), ("key", 0)]
    bad = cli(
        "budgets",
        "set",
        "--user",
        "dora",
        "--period",
        "total",
        "--rolling",
        "--limit",
        "1",
        ok=False,
    )
    assert bad.returncode == 1 and "cannot be rolling" in bad.stderr
    cli("budgets", "remove", str(made["id"]))
    assert len(orjson.loads(cli("budgets", "list", "dora", "--json").stdout)) == 1
    gone = cli("budgets", "remove", str(made["id"]), ok=False)
    assert gone.returncode == 1 and "No budget" in gone.stderr


def test_db_prune_totals_the_days_then_deletes_what_retention_no_longer_keeps(
    cli, db_url: str
) -> None:
    cli("users", "create", "ivy", "--balance", "1")
    books = Books(db_url)

    async def aged_rows(conn: AsyncConnection) -> None:
        user_id = await conn.scalar(select(ApiUser.id).where(ApiUser.name == "ivy"))
        now = dt.datetime.now(dt.UTC)
        for n, days in enumerate((40, 3)):
            await conn.execute(
                insert(ApiRequest).values(
                    request_id=f"req-{n}",
                    user_id=user_id,
                    status="ok",
                    provider="openai",
                    prompt_tokens=7,
                    created_at=now - dt.timedelta(days=days),
                )
            )

    books.run(aged_rows)
    report = orjson.loads(cli("db", "prune", "--requests", "10", "--json").stdout)
    assert len(report["days_totalled"]) == 40
    assert report["deleted"]["requests"] == 1
    assert report["requests_kept_from"] is not None
    assert books.scalar("SELECT count(*) FROM api_requests") == 1
    assert books.scalar("SELECT sum(prompt_tokens) FROM api_usage_daily") == 14
    text = cli("db", "prune").stdout
    assert text.startswith("totalled 0 day(s); deleted 0 payloads, 0 requests")
    result = cli("db", "prune", "--requests", "0", ok=False)
    assert result.returncode == 2 and "whole number from 1, or 'all'" in result.stderr
    assert "balance" in cli("db", "reconcile").stdout
