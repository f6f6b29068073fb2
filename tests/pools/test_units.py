"""The pools' pure parts: header readings, windows, breakers, credentials, re-targeting."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from ai_service.config import Settings
from ai_service.errors import RateLimitError, UpstreamError, UpstreamStatusError
from ai_service.pools import (
    Credential,
    CredentialError,
    CredentialSpec,
    Pool,
    encrypt_key,
    member,
    retarget,
)
from ai_service.pools.breaker import Breaker, State
from ai_service.pools.credentials import resolve
from ai_service.pools.headroom import Reading, Window, duration, read
from ai_service.providers.base import ChatRequest, ProviderConfig
from ai_service.providers.openai import OpenAIAdapter

WALL = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("7", 7.0), ("x", None)],
)
def test_openai_reset_durations(text: str, seconds: float | None) -> None:
    assert duration(text) == seconds


def test_openai_headers_give_both_readings() -> None:
    requests, tokens = read(
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-tokens": "29000",
            "x-ratelimit-reset-tokens": "2s",
        },
        WALL,
    )
    assert requests == Reading(500, 499, 0.12)
    assert tokens == Reading(30000, 29000, 2.0)


def test_anthropic_headers_give_both_readings() -> None:
    at = dt.datetime.fromtimestamp(WALL + 30, dt.UTC).isoformat().replace("+00:00", "Z")
    requests, tokens = read(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": at,
            "anthropic-ratelimit-input-tokens-limit": "40000",
            "anthropic-ratelimit-input-tokens-remaining": "100",
            "anthropic-ratelimit-input-tokens-reset": at,
        },
        WALL,
    )
    assert requests == Reading(50, 0, 30.0)
    assert tokens == Reading(40000, 100, 30.0)


def test_no_rate_limit_headers_read_nothing() -> None:
    assert read({"content-type": "application/json"}, WALL) == (None, None)


def test_a_window_refills_at_its_rate_and_reports_its_wait() -> None:
    window = Window(60, 0.0)
    window.spend(60, 0.0)
    assert not window.fits(1, 0.0)
    assert window.wait(1, 0.0) == pytest.approx(1.0)
    assert window.fits(1, 1.0)
    assert window.current(1000.0) == 60  # never above its capacity
    # a request larger than the whole window fits when the window is full
    assert Window(10, 0.0).fits(50, 0.0)


def test_a_window_takes_the_providers_count() -> None:
    window = Window(None, 0.0)
    assert window.fits(10**9, 0.0) and window.fraction(0.0) == 1.0
    window.observe(Reading(100, 0, 10.0), 0.0, None)
    assert window.capacity == 100 and not window.fits(1, 0.0)
    assert window.wait(1, 0.0) == pytest.approx(0.1)  # 100 back in 10 s
    window.observe(Reading(100, 50, None), 1.0, 80)  # a configured limit wins
    assert window.capacity == 80 and window.fraction(1.0) == pytest.approx(50 / 80)


def test_a_breaker_opens_after_its_threshold_and_closes_after_a_good_trial() -> None:
    breaker = Breaker(threshold=3, cooldown=10.0)
    for now in (1.0, 2.0):
        breaker.failure(now)
    assert breaker.state is State.CLOSED
    breaker.success()  # failures count in a row
    for now in (3.0, 4.0, 5.0):
        breaker.failure(now)
    assert breaker.state is State.OPEN and not breaker.allows(14.0)
    assert breaker.allows(15.0)
    breaker.take(15.0)
    assert breaker.state is State.HALF_OPEN
    assert not breaker.allows(16.0)  # one trial at a time
    assert breaker.allows(25.0)  # a trial that never reported frees the way
    breaker.success()
    assert breaker.state is State.CLOSED and breaker.allows(26.0)


def test_a_failed_trial_opens_the_breaker_for_another_cooldown() -> None:
    breaker = Breaker(threshold=1, cooldown=5.0)
    breaker.failure(0.0)
    breaker.take(5.0)
    breaker.failure(5.5)
    assert breaker.state is State.OPEN and breaker.reopens_in(6.0) == pytest.approx(4.5)


def test_credentials_come_from_the_settings_a_variable_or_an_encrypted_token() -> None:
    secret = Fernet.generate_key().decode()
    token = encrypt_key("sk-enc", secret)
    environ = {"TEAM_KEY": "sk-env"}
    url = "https://api.example/v1"
    given = resolve(CredentialSpec(label="a", key="sk-given"), url, secret, environ)
    assert (given.key, given.base_url) == ("sk-given", url)
    from_env = resolve(CredentialSpec(label="b", key_env="TEAM_KEY"), url, secret, environ)
    assert from_env.key == "sk-env"
    encrypted = CredentialSpec(label="c", key_encrypted=token)
    assert resolve(encrypted, url, secret, environ).key == "sk-enc"
    assert "sk-given" not in repr(given)
    with pytest.raises(CredentialError, match="UNSET is not set"):
        resolve(CredentialSpec(label="d", key_env="UNSET"), url, secret, environ)
    with pytest.raises(CredentialError, match="cannot decrypt"):
        resolve(encrypted, url, Fernet.generate_key().decode(), environ)
    with pytest.raises(CredentialError, match="AI_SERVICE_CREDENTIALS_KEY"):
        resolve(encrypted, url, None, environ)


def test_settings_refuse_malformed_pools() -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        Settings(pools={"openai": [{"label": "a"}]})
    with pytest.raises(ValidationError, match="exactly one of"):
        Settings(pools={"openai": [{"label": "a", "key": "k", "key_env": "K"}]})
    with pytest.raises(ValidationError, match="unknown provider"):
        Settings(pools={"nope": [{"label": "a", "key": "k"}]})
    with pytest.raises(ValidationError, match="same label"):
        Settings(pools={"openai": [{"label": "a", "key": "k"}, {"label": "a", "key": "j"}]})
    with pytest.raises(ValidationError, match="weight"):
        Settings(pools={"openai": [{"label": "a", "key": "k", "weight": 0}]})
    with pytest.raises(ValidationError, match="Fernet key"):
        Settings(credentials_key="not-a-fernet-key")


def test_a_request_built_for_one_credential_is_sent_with_anothers() -> None:
    first = Credential("a", "sk-aaaa", "https://one.example/v1/")
    second = Credential("b", "sk-bbbb", "https://two.example/v1")
    adapter = OpenAIAdapter(ProviderConfig("openai", first.base_url, first.key, "OPENAI_API_KEY"))
    built = adapter.build_request(
        ChatRequest({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "m", False, 9)
    )
    sent = retarget(built, first, second)
    assert sent.url == "https://two.example/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-bbbb"
    assert "sk-aaaa" not in str(sent.headers)
    assert sent.body == built.body
    assert built.headers["Authorization"] == "Bearer sk-aaaa"  # the original is unchanged


def _pool(*weights: int, clock: list[float]) -> Pool:
    settings = Settings(pool_breaker_failures=2)
    members = [
        member(
            Credential(label, f"sk-{label}", "http://x", weight),
            OpenAIAdapter(ProviderConfig("openai", "http://x", f"sk-{label}", "OPENAI_API_KEY")),
            settings,
            lambda: clock[0],
        )
        for label, weight in zip("abc", weights, strict=False)
    ]
    return Pool("openai", members, clock=lambda: clock[0])


def _limited(status: int, retry_after: float | None = None) -> RateLimitError:
    error = RateLimitError("limited", retry_after=retry_after, retryable=True)
    error.upstream_status = status
    return error


def test_a_pool_chooses_by_weight_times_headroom() -> None:
    clock = [100.0]
    pool = _pool(1, 1, clock=clock)
    a, b = pool.members
    a.requests.observe(Reading(100_000, 100_000, None), 100.0, None)
    b.requests.observe(Reading(100_000, 10_000, None), 100.0, None)  # a tenth left
    picks = [pool.choose(1, set()) for _ in range(2000)]
    share = picks.count(a) / len(picks)
    assert 0.85 <= share <= 0.95  # about 100 : 10


def test_a_pool_refuses_with_the_earliest_wait_and_moves_past_the_blocked() -> None:
    clock = [0.0]
    pool = _pool(1, 1, 1, clock=clock)
    a, b, c = pool.members
    assert pool.failed(a, _limited(429, 30.0), 1) and pool.another(a, 1)
    assert pool.failed(b, _limited(429, 10.0), 1) and pool.another(b, 1)
    assert pool.failed(c, _limited(429, 20.0), 1) and not pool.another(c, 1)
    assert pool.choose(1, set()) is None
    refusal = pool.refusal(1)
    assert isinstance(refusal, RateLimitError) and refusal.retry_after == pytest.approx(10.0)
    clock[0] = 10.5
    assert pool.choose(1, set()) is b


def test_the_requests_own_error_is_not_the_credentials() -> None:
    clock = [0.0]
    pool = _pool(1, 1, clock=clock)
    error = UpstreamStatusError("bad", status_code=400)
    error.upstream_status = 400
    assert not pool.failed(pool.members[0], error, 1)
    failure = UpstreamError("down", retryable=True)
    failure.upstream_status = 500
    assert pool.failed(pool.members[0], failure, 1)
