"""`ai-service pools ...` as an operator runs it: keys encrypted, pools listed, keys enabled."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from redis import Redis

from ai_service.pools.credentials import CredentialSpec, resolve
from ai_service.storage.db import upgrade

REDIS_URL = os.environ.get("AI_SERVICE_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite database of its own: stored credentials live there."""
    url = f"sqlite:///{tmp_path / 'pools.db'}"
    monkeypatch.setenv("AI_SERVICE_DATABASE_URL", url)
    upgrade(url)
    return url


def run(
    *args: str, stdin: str = "", ok: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "ai_service", "pools", *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def pools_env(prefix: str = "ai-service:pool:") -> dict[str, str]:
    pools = {
        "openai": [
            {"label": "team-a", "key": "sk-secret-aaaa", "weight": 3, "rpm": 500},
            {"label": "team-b", "key_env": "TEAM_B_KEY", "base_url": "https://eu.example/v1"},
        ]
    }
    return {
        "AI_SERVICE_POOLS": orjson.dumps(pools).decode(),
        "AI_SERVICE_POOL_STATE_PREFIX": prefix,
    }


def test_a_key_encrypted_by_the_cli_is_read_with_the_secret() -> None:
    secret = run("new-secret").stdout.strip()
    token = run("encrypt-key", stdin="sk-upstream-1234\n", AI_SERVICE_CREDENTIALS_KEY=secret)
    value = token.stdout.strip()
    assert "sk-upstream-1234" not in value
    spec = CredentialSpec(label="x", key_encrypted=value)
    assert resolve(spec, "https://api.example", secret).key == "sk-upstream-1234"
    missing = run("encrypt-key", stdin="k\n", ok=False, AI_SERVICE_CREDENTIALS_KEY="")
    assert missing.returncode == 1 and "AI_SERVICE_CREDENTIALS_KEY" in missing.stderr


def test_pools_list_shows_labels_and_sources_never_keys() -> None:
    out = run("list", "--json", **pools_env())
    rows = orjson.loads(out.stdout)
    assert [(r["label"], r["weight"], r["key"], r["source"]) for r in rows] == [
        ("team-a", 3, "given", "settings"),
        ("team-b", 1, "$TEAM_B_KEY", "settings"),
    ]
    assert rows[0]["base_url"] == "https://api.openai.com/v1"
    assert "sk-secret" not in out.stdout
    text = run("list", **pools_env()).stdout
    assert "team-b" in text and "sk-secret" not in text


def test_pools_enable_needs_redis_and_writes_the_shared_state() -> None:
    refused = run("enable", "openai", "team-a", ok=False, **pools_env())
    assert refused.returncode == 1 and "admin API" in refused.stderr
    unknown = run("enable", "openai", "nope", ok=False, **pools_env())
    assert unknown.returncode == 1
    try:
        client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.ping()
    except Exception:
        pytest.skip(f"no Redis at {REDIS_URL}")
    prefix = f"ai-service-test:{uuid.uuid4().hex[:8]}:pool:"
    try:
        client.hset(prefix + "openai", "team-a", orjson.dumps({"changed": 1.0, "disabled": "401"}))
        env = {**pools_env(prefix), "AI_SERVICE_REDIS_URL": REDIS_URL}
        assert "disabled" in run("list", **env).stdout
        run("enable", "openai", "team-a", **env)
        state = orjson.loads(client.hget(prefix + "openai", "team-a") or b"{}")
        assert state["disabled"] is None and state["breaker"] == "closed"
        assert state["changed"] > 1.0
        assert "disabled" not in run("list", **env).stdout
    finally:
        client.delete(prefix + "openai")
        client.close()


def test_pools_add_stores_the_key_encrypted_and_remove_deletes_it(database: str) -> None:
    secret = run("new-secret").stdout.strip()
    refused = run("add", "openai", "extra", stdin="sk-extra-key\n", ok=False)
    assert refused.returncode == 1 and "AI_SERVICE_CREDENTIALS_KEY" in refused.stderr
    env = {**pools_env(), "AI_SERVICE_CREDENTIALS_KEY": secret}
    out = run("add", "openai", "extra", "--weight", "2", stdin="sk-extra-key\n", **env)
    assert "sk-extra-key" not in out.stdout
    run("add", "claude", "ws", "--key-env", "ANTHROPIC_WS_KEY", **env)
    taken = run("add", "openai", "team-a", stdin="k\n", ok=False, **env)
    assert taken.returncode == 1 and "taken" in taken.stderr
    listed = orjson.loads(run("list", "--json", **env).stdout)
    assert [(r["provider"], r["label"], r["source"], r["key"]) for r in listed] == [
        ("openai", "team-a", "settings", "given"),
        ("openai", "team-b", "settings", "$TEAM_B_KEY"),
        ("openai", "extra", "stored", "encrypted"),
        ("claude", "ws", "stored", "$ANTHROPIC_WS_KEY"),
    ]
    raw = Path(database.removeprefix("sqlite:///")).read_bytes()
    assert b"sk-extra-key" not in raw  # only its token is stored
    run("remove", "openai", "extra", **env)
    assert run("remove", "openai", "extra", ok=False, **env).returncode == 1
    assert run("remove", "openai", "team-a", ok=False, **env).returncode == 1  # the settings'
