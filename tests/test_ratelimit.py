"""Rate limiters: GCRA windows, Retry-After, token refunds, concurrency, Redis sharing and faults.

The window tests run on both limiters with one fake clock (the Redis limiter sends
it instead of reading Redis's `TIME`). The Redis tests use the server named by
`AI_SERVICE_TEST_REDIS` (default `redis://127.0.0.1:6379/0`), a key prefix of their
own, and delete their keys afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from ai_service.auth import Principal
from ai_service.config import Settings
from ai_service.errors import RateLimitError
from ai_service.ratelimit import (
    PERIOD_US,
    GcraLimiter,
    Limits,
    LocalRateLimiter,
    build_limiter,
)
from ai_service.ratelimit.redis import SCRIPT_SHA, RedisRateLimiter, connect

REDIS_URL = os.environ.get("AI_SERVICE_TEST_REDIS", "redis://127.0.0.1:6379/0")
ALICE = Principal(key_id=11, user_id=1, user_name="alice", key_prefix="ais-alice")
ALICE_2 = Principal(key_id=12, user_id=1, user_name="alice", key_prefix="ais-alice2")
BOB = Principal(key_id=21, user_id=2, user_name="bob", key_prefix="ais-bob")
CAROL = Principal(key_id=31, user_id=3, user_name="carol", key_prefix="ais-carol")


class FakeClock:
    """Microseconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1_700_000_000 * 1_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1_000_000)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def admitted(limiter: GcraLimiter, principal: Principal, limits: Limits, tokens: int) -> bool:
    try:
        await limiter.admit(principal, limits, tokens)
    except RateLimitError:
        return False
    return True


async def refusal(
    limiter: GcraLimiter, principal: Principal, limits: Limits, tokens: int = 0
) -> RateLimitError:
    with pytest.raises(RateLimitError) as info:
        await limiter.admit(principal, limits, tokens)
    return info.value


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> str:
    async def ping() -> None:
        client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except OSError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    except Exception as exc:  # pragma: no cover - redis wraps connection errors
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Callable[[], Redis]]:
    """Fresh clients to the test Redis (one a simulated gateway instance), closed afterwards."""
    clients: list[Redis] = []

    def make() -> Redis:
        client = connect(redis_url, 1.0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def prefix(redis: Callable[[], Redis]) -> AsyncIterator[str]:
    value = f"test-rl:{uuid.uuid4().hex}:"
    yield value
    client = redis()
    keys = [key async for key in client.scan_iter(match=value + "*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["local", "redis"])
def make_limiter(request: pytest.FixtureRequest, clock: FakeClock) -> Callable[..., GcraLimiter]:
    """Limiters of one kind sharing one set of counters (and the fake clock)."""
    if request.param == "local":
        shared = LocalRateLimiter(clock=clock)

        def local(default_rpm: int | None = None, default_tpm: int | None = None) -> GcraLimiter:
            shared.default_rpm, shared.default_tpm = default_rpm, default_tpm
            return shared

        return local
    redis: Callable[[], Redis] = request.getfixturevalue("redis")
    prefix: str = request.getfixturevalue("prefix")

    def remote(default_rpm: int | None = None, default_tpm: int | None = None) -> GcraLimiter:
        return RedisRateLimiter(
            redis(), prefix=prefix, default_rpm=default_rpm, default_tpm=default_tpm, clock=clock
        )

    return remote


# ---- window behaviour, on both limiters ---------------------------------------------------


async def test_burst_up_to_rpm_then_429_with_retry_after(
    make_limiter: Callable[..., GcraLimiter],
) -> None:
    limiter = make_limiter(default_rpm=3)
    for _ in range(3):
        await limiter.admit(ALICE, Limits(), 0)
    exc = await refusal(limiter, ALICE, Limits())
    assert exc.status == 429
    assert exc.error_code == "rate_limit_exceeded"
    assert exc.retry_after == 20
    assert exc.headers() == {"Retry-After": "20"}
    assert exc.message == (
        "Rate limit reached for requests per minute (RPM) on this account: limit 3. "
        "Please try again in 20.0s."
    )


async def test_window_refills_continuously(
    make_limiter: Callable[..., GcraLimiter], clock: FakeClock
) -> None:
    limiter = make_limiter()
    limits = Limits(user_rpm=3)
    for _ in range(3):
        await limiter.admit(ALICE, limits, 0)
    clock.advance(19.9)
    assert (await refusal(limiter, ALICE, limits)).message.endswith("try again in 100ms.")
    clock.advance(0.1)
    assert await admitted(limiter, ALICE, limits, 0)
    assert not await admitted(limiter, ALICE, limits, 0)
    clock.advance(60)
    outcomes = [await admitted(limiter, ALICE, limits, 0) for _ in range(4)]
    assert outcomes == [True, True, True, False]


async def test_retry_after_rounds_up_to_whole_seconds(
    make_limiter: Callable[..., GcraLimiter],
) -> None:
    limiter = make_limiter()
    limits = Limits(user_rpm=7)
    for _ in range(7):
        await limiter.admit(ALICE, limits, 0)
    exc = await refusal(limiter, ALICE, limits)
    assert exc.retry_after == 9  # 60 s / 7 = 8.57 s
    assert "try again in 8.6s" in exc.message


async def test_key_limit_names_the_key_and_spares_the_other_keys(
    make_limiter: Callable[..., GcraLimiter],
) -> None:
    limiter = make_limiter()
    limits = Limits(key_rpm=1)
    await limiter.admit(ALICE, limits, 0)
    exc = await refusal(limiter, ALICE, limits)
    assert "requests per minute (RPM) on this API key: limit 1" in exc.message
    assert exc.retry_after == 60
    assert await admitted(limiter, ALICE_2, limits, 0)
    assert await admitted(limiter, BOB, limits, 0)


async def test_user_limit_is_shared_by_the_users_keys(
    make_limiter: Callable[..., GcraLimiter],
) -> None:
    limiter = make_limiter()
    limits = Limits(user_rpm=2)
    await limiter.admit(ALICE, limits, 0)
    await limiter.admit(ALICE_2, limits, 0)
    assert not await admitted(limiter, ALICE, limits, 0)
    assert not await admitted(limiter, ALICE_2, limits, 0)
    assert await admitted(limiter, BOB, limits, 0)


async def test_refused_request_consumes_no_counter(
    make_limiter: Callable[..., GcraLimiter],
) -> None:
    limiter = make_limiter()
    limits = Limits(key_rpm=2, user_tpm=100)
    await limiter.admit(ALICE, limits, 80)
    exc = await refusal(limiter, ALICE, limits, 80)
    assert "tokens per minute (TPM) on this account: limit 100" in exc.message
    assert exc.retry_after == 36  # 60 tokens to wait for at 100 a minute
    assert await admitted(limiter, ALICE, limits, 20)  # the key's second request is still free
    assert not await admitted(limiter, ALICE, limits, 0)


async def test_the_longest_wait_is_reported(make_limiter: Callable[..., GcraLimiter]) -> None:
    limiter = make_limiter()
    limits = Limits(key_rpm=2, user_tpm=500)
    await limiter.admit(ALICE, limits, 50)
    await limiter.admit(ALICE, limits, 50)  # key: full; user: 12 s of its minute
    await limiter.admit(ALICE_2, limits, 400)  # user: full
    exc = await refusal(limiter, ALICE, limits, 450)  # key waits 30 s, user 54 s
    assert exc.retry_after == 54
    assert "tokens per minute (TPM) on this account: limit 500" in exc.message
    exc = await refusal(limiter, ALICE, limits, 0)  # key waits 30 s, user none
    assert exc.retry_after == 30
    assert "requests per minute (RPM) on this API key: limit 2" in exc.message


async def test_settle_refunds_unused_tokens(make_limiter: Callable[..., GcraLimiter]) -> None:
    limiter = make_limiter()
    limits = Limits(key_tpm=1000, user_tpm=2000)
    await limiter.admit(ALICE, limits, 1000)
    assert not await admitted(limiter, ALICE, limits, 1)
    await limiter.settle_tokens(ALICE, limits, reserved_tokens=1000, actual_tokens=100)
    assert not await admitted(limiter, ALICE, limits, 901)
    assert await admitted(limiter, ALICE, limits, 900)
    assert not await admitted(limiter, ALICE, limits, 1)


async def test_settle_charges_tokens_beyond_the_reservation(
    make_limiter: Callable[..., GcraLimiter],
) -> None:
    limiter = make_limiter()
    limits = Limits(user_tpm=1000)
    await limiter.admit(ALICE, limits, 100)
    await limiter.settle_tokens(ALICE, limits, reserved_tokens=100, actual_tokens=600)
    assert not await admitted(limiter, ALICE, limits, 401)
    assert await admitted(limiter, ALICE, limits, 400)


async def test_refund_never_gives_more_than_a_full_minute(
    make_limiter: Callable[..., GcraLimiter], clock: FakeClock
) -> None:
    limiter = make_limiter()
    limits = Limits(user_tpm=1000)
    await limiter.admit(ALICE, limits, 500)
    clock.advance(60)
    await limiter.settle_tokens(ALICE, limits, reserved_tokens=500, actual_tokens=0)
    assert await admitted(limiter, ALICE, limits, 1000)
    assert not await admitted(limiter, ALICE, limits, 1)


async def test_request_larger_than_the_tpm_limit_is_refused_without_retry_after(
    make_limiter: Callable[..., GcraLimiter],
) -> None:
    limiter = make_limiter()
    limits = Limits(key_tpm=100)
    exc = await refusal(limiter, ALICE, limits, 101)
    assert exc.retry_after is None and exc.headers() == {}
    assert exc.param == "max_tokens"
    assert exc.message.startswith("Request too large for the tokens per minute (TPM) limit")
    assert "limit 100, requested up to 101" in exc.message
    assert await admitted(limiter, ALICE, limits, 100)


async def test_defaults_apply_to_users_and_zero_means_unlimited(
    make_limiter: Callable[..., GcraLimiter],
) -> None:
    limiter = make_limiter(default_rpm=1, default_tpm=50)
    await limiter.admit(ALICE, Limits(), 10)
    assert not await admitted(limiter, ALICE, Limits(), 0)
    assert not await admitted(limiter, BOB, Limits(), 51)
    exempt = Limits(user_rpm=0, user_tpm=0)
    assert all([await admitted(limiter, BOB, exempt, 10_000) for _ in range(20)])
    own = Limits(user_rpm=3)
    outcomes = [await admitted(limiter, CAROL, own, 0) for _ in range(4)]
    assert outcomes == [True, True, True, False]


async def test_no_limits_means_no_counters(make_limiter: Callable[..., GcraLimiter]) -> None:
    limiter = make_limiter()
    for _ in range(100):
        await limiter.admit(ALICE, Limits(key_rpm=0), 10**9)
    assert limiter.counters(ALICE, Limits(key_rpm=0)) == []


async def test_concurrent_admissions_never_exceed_the_limit(
    make_limiter: Callable[..., GcraLimiter],
) -> None:
    limiter = make_limiter()
    limits = Limits(key_rpm=25, user_tpm=1000)
    results = await asyncio.gather(*(admitted(limiter, ALICE, limits, 30) for _ in range(60)))
    assert sum(results) == 25
    results = await asyncio.gather(*(admitted(limiter, ALICE_2, limits, 30) for _ in range(60)))
    assert sum(results) == 8  # 1000 tokens a minute / 30 = 33, 25 already taken by ALICE


# ---- the in-process limiter ---------------------------------------------------------------


def test_token_ceiling_is_the_smallest_tpm_limit() -> None:
    limiter = LocalRateLimiter(default_tpm=5000)
    assert limiter.token_ceiling(Limits()) == 5000
    assert limiter.token_ceiling(Limits(key_tpm=700)) == 700
    assert limiter.token_ceiling(Limits(key_tpm=9000, user_tpm=0)) == 9000
    assert LocalRateLimiter().token_ceiling(Limits(user_rpm=5)) is None


async def test_local_counters_expire_when_their_bucket_is_full_again(clock: FakeClock) -> None:
    limiter = LocalRateLimiter(clock=clock)
    limits = Limits(key_rpm=60, user_tpm=600)
    await limiter.admit(ALICE, limits, 300)  # key: 1 s of the minute, user: 30 s
    assert len(limiter) == 2
    clock.advance(1)
    limiter.sweep()
    assert len(limiter) == 1
    clock.advance(29)
    limiter.sweep()
    assert len(limiter) == 0
    await limiter.admit(ALICE, limits, 300)
    await limiter.settle_tokens(ALICE, limits, 300, 0)  # a full refund drops the counter
    assert len(limiter) == 1


async def test_local_table_sweeps_itself_as_it_grows(clock: FakeClock) -> None:
    limiter = LocalRateLimiter(clock=clock)
    limits = Limits(user_rpm=1)
    for user in range(1025):
        await limiter.admit(Principal(user, user, "u", "p"), limits, 0)
    assert len(limiter) == 1025
    clock.advance(60)
    for user in range(2000, 3100):
        await limiter.admit(Principal(user, user, "u", "p"), limits, 0)
    assert len(limiter) < 2000


async def test_local_admission_costs_microseconds() -> None:
    limiter = LocalRateLimiter(default_rpm=10**9, default_tpm=10**9)
    limits = Limits(key_rpm=10**9, key_tpm=10**9)
    rounds = 20_000
    started = time.perf_counter()
    for _ in range(rounds):
        await limiter.admit(ALICE, limits, 100)
        await limiter.settle_tokens(ALICE, limits, 100, 40)
    per_call = (time.perf_counter() - started) / rounds / 2
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs a call"


def test_build_limiter_follows_the_settings() -> None:
    local = build_limiter(Settings(default_rpm=5))
    assert isinstance(local, LocalRateLimiter) and local.default_rpm == 5
    remote = build_limiter(
        Settings(redis_url=f"redis://127.0.0.1:{unused_port()}/0", default_tpm=7)
    )
    assert isinstance(remote, RedisRateLimiter) and remote.default_tpm == 7
    asyncio.run(remote.aclose())


# ---- Redis: shared by instances, expiry, the script cache -------------------------------------


async def test_two_instances_enforce_one_limit(
    redis: Callable[[], Redis], prefix: str, clock: FakeClock
) -> None:
    first, second = (RedisRateLimiter(redis(), prefix=prefix, clock=clock) for _ in range(2))
    limits = Limits(key_rpm=5, user_tpm=1000)
    outcomes = [await admitted((first, second)[i % 2], ALICE, limits, 10) for i in range(8)]
    assert outcomes == [True] * 5 + [False] * 3
    await first.admit(ALICE_2, limits, 900)
    assert not await admitted(second, ALICE_2, limits, 100)  # 950 of 1000 used
    await first.settle_tokens(ALICE_2, limits, 900, 100)
    assert await admitted(second, ALICE_2, limits, 100)


async def test_two_instances_under_concurrent_load_never_exceed_the_limit(
    redis: Callable[[], Redis], prefix: str
) -> None:
    instances = [RedisRateLimiter(redis(), prefix=prefix) for _ in range(2)]  # Redis's clock
    limits = Limits(user_rpm=30)
    results = await asyncio.gather(
        *(admitted(instances[i % 2], ALICE, limits, 0) for i in range(120))
    )
    assert sum(results) == 30


async def test_redis_counters_expire_when_their_bucket_is_full_again(
    redis: Callable[[], Redis], prefix: str, clock: FakeClock
) -> None:
    client = redis()
    limiter = RedisRateLimiter(client, prefix=prefix, clock=clock)
    limits = Limits(key_rpm=60, user_tpm=1000)
    await limiter.admit(ALICE, limits, 500)
    key_rpm = limiter.key(ALICE.user_id, limiter.counters(ALICE, limits)[0])
    user_tpm = limiter.key(ALICE.user_id, limiter.counters(ALICE, limits)[1])
    assert key_rpm == f"{prefix}{{u1}}:k11:r"
    assert user_tpm == f"{prefix}{{u1}}:u1:t"
    assert 900 < await client.pttl(key_rpm) <= 1000
    assert 29_900 < await client.pttl(user_tpm) <= 30_000
    assert await client.get(user_tpm) == str(clock.now + PERIOD_US // 2).encode()
    await limiter.settle_tokens(ALICE, limits, 500, 0)
    assert await client.exists(user_tpm) == 0


async def test_redis_counters_vanish_on_the_servers_clock(
    redis: Callable[[], Redis], prefix: str
) -> None:
    client = redis()
    limiter = RedisRateLimiter(client, prefix=prefix)
    limits = Limits(key_rpm=600)  # 100 ms a request
    await limiter.admit(ALICE, limits, 0)
    key = limiter.key(ALICE.user_id, limiter.counters(ALICE, limits)[0])
    assert await client.exists(key) == 1
    await asyncio.sleep(0.25)
    assert await client.exists(key) == 0


async def test_redis_server_clock_gives_retry_after(
    redis: Callable[[], Redis], prefix: str
) -> None:
    limiter = RedisRateLimiter(redis(), prefix=prefix)
    limits = Limits(user_rpm=2)
    await limiter.admit(BOB, limits, 0)
    await limiter.admit(BOB, limits, 0)
    exc = await refusal(limiter, BOB, limits)
    assert exc.retry_after == 30


async def test_redis_script_is_reloaded_after_a_flush(
    redis: Callable[[], Redis], prefix: str, clock: FakeClock
) -> None:
    client = redis()
    limiter = RedisRateLimiter(client, prefix=prefix, clock=clock)
    await client.script_flush()
    assert await client.script_exists(SCRIPT_SHA) == [False]
    await limiter.admit(ALICE, Limits(key_rpm=1), 0)
    assert await client.script_exists(SCRIPT_SHA) == [True]
    assert not await admitted(limiter, ALICE, Limits(key_rpm=1), 0)
    assert limiter.redis_available


# ---- Redis unreachable: fail open to per-instance counters ------------------------------------


class Proxy:
    """A TCP proxy to Redis that can be cut and restored, as a network fault would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = unused_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_unreachable_redis_fails_open_to_per_instance_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = connect(f"redis://127.0.0.1:{unused_port()}/0", 0.2)
    limiter = RedisRateLimiter(client, prefix="unused:", retry_seconds=5)
    limits = Limits(user_rpm=2)
    started = time.perf_counter()
    with caplog.at_level("WARNING", logger="ai_service.ratelimit"):
        await limiter.admit(ALICE, limits, 0)
        await limiter.admit(ALICE, limits, 0)
        exc = await refusal(limiter, ALICE, limits)
    assert time.perf_counter() - started < 1.0
    assert exc.retry_after == 30
    assert not limiter.redis_available
    assert len(limiter.fallback) == 1
    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not once a request
    await limiter.aclose()


async def test_redis_that_hangs_times_out_and_fails_open() -> None:
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen()  # accepts connections, never answers
    try:
        client = connect(f"redis://127.0.0.1:{hung.getsockname()[1]}/0", 0.1)
        limiter = RedisRateLimiter(client, prefix="unused:")
        started = time.perf_counter()
        await limiter.admit(ALICE, Limits(key_rpm=5), 0)
        assert time.perf_counter() - started < 1.0
        assert not limiter.redis_available
        await limiter.aclose()
    finally:
        hung.close()


async def test_limiter_returns_to_redis_when_it_is_back(
    redis: Callable[[], Redis], prefix: str, redis_url: str
) -> None:
    proxy = Proxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    await proxy.up()
    monotonic = Monotonic()
    limiter = RedisRateLimiter(
        connect(f"redis://127.0.0.1:{proxy.port}/0", 0.2),
        prefix=prefix,
        retry_seconds=5,
        monotonic=monotonic,
    )
    other = RedisRateLimiter(redis(), prefix=prefix)
    limits = Limits(key_rpm=3)
    try:
        await limiter.admit(ALICE, limits, 0)
        assert limiter.redis_available
        await proxy.down()
        await limiter.admit(ALICE, limits, 0)  # counted locally
        assert not limiter.redis_available
        await proxy.up()
        monotonic.now += 4.9
        await limiter.admit(ALICE, limits, 0)  # still local: Redis is not retried yet
        assert not limiter.redis_available
        monotonic.now += 0.2
        await limiter.admit(ALICE, limits, 0)  # Redis again: its second request there
        assert limiter.redis_available
        assert await admitted(other, ALICE, limits, 0)  # the third in Redis
        assert not await admitted(other, ALICE, limits, 0)
    finally:
        await limiter.aclose()
        await proxy.down()


def test_the_package_does_not_import_the_authentication_layer() -> None:
    code = "import sys, ai_service.ratelimit.redis; print('ai_service.auth' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
