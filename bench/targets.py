"""The servers a bench run drives: the fake upstream, the bare proxy, and ai-service.

Each is a subprocess in its own session, pinned to a core, stopped with its
whole process group. ai-service runs from its own CLI (`ai-service serve`) on
a database made for the run: a fresh PostgreSQL database (dropped afterwards)
or a fresh SQLite file, with one user holding a large balance.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import procs
from bench.scenarios import APIS

UPSTREAM_KEY = "sk-bench-upstream"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
COMMIT_MS: dict[str, float | None] = {}  # database -> measured commit latency
GATEWAY_PREFIX = "BENCH_GATEWAY_"
PROVIDER_PREFIXES = ("OPENAI_", "ANTHROPIC_", "MISTRAL_", "TOGETHER_", "DEEPSEEK_", "AI_SERVICE_")


@dataclass
class Target:
    """Where the load generator sends requests, and whose CPU time it reads."""

    name: str
    origin: str
    gateway: bool  # ai-service's paths (else the upstream's, as direct and the bare proxy)
    headers: list[str] = field(default_factory=list)
    pid: int | None = None  # the server's process (tree) to measure
    database: str | None = None  # PostgreSQL database whose backends to measure
    # more instances of the same server sharing the load: (origin, pid) of each
    others: list[tuple[str, int]] = field(default_factory=list)

    def url(self, api: str) -> str:
        """The URL of one API (of `scenarios.APIS`)."""
        upstream, gateway = APIS[api]
        return self.origin + (gateway if self.gateway else upstream)

    def urls(self, api: str) -> list[str]:
        """The URL of one API at every instance."""
        path = self.url(api).removeprefix(self.origin)
        return [origin + path for origin in self.origins]

    @property
    def origins(self) -> list[str]:
        return [self.origin, *(origin for origin, _ in self.others)]

    @property
    def pids(self) -> list[int]:
        return [pid for pid in (self.pid, *(pid for _, pid in self.others)) if pid is not None]


@dataclass
class Upstream:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(
        self, delay_ms: float, chunks: int, interval_ms: float, rate_limit_headers: bool = False
    ) -> None:
        body = orjson.dumps(
            {
                "delay_ms": delay_ms,
                "chunks": chunks,
                "interval_ms": interval_ms,
                "rate_limit_headers": rate_limit_headers,
            }
        )
        procs.post_json(self.origin + "/_bench/config", body)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@contextlib.contextmanager
def fake_upstream(core: int | None, logs: Path) -> Iterator[Upstream]:
    port = procs.free_port()
    log = logs / "fake-upstream.log"
    proc = procs.spawn(
        python_module("bench.fake_upstream", "--port", str(port)), core=core, log=log
    )
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/healthz", proc, log=log)
        yield Upstream(port, proc)
    finally:
        procs.stop(proc)


@contextlib.contextmanager
def direct(upstream: Upstream) -> Iterator[Target]:
    yield Target(
        "direct",
        upstream.origin,
        False,
        [f"Authorization: Bearer {UPSTREAM_KEY}"],
        pid=upstream.proc.pid,
    )


@contextlib.contextmanager
def bare_proxy(upstream: Upstream, core: int | None, logs: Path) -> Iterator[Target]:
    port = procs.free_port()
    log = logs / "bare-proxy.log"
    proc = procs.spawn(
        python_module("bench.bare_proxy", "--port", str(port), "--upstream", upstream.origin),
        core=core,
        log=log,
    )
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/healthz", proc, log=log)
        yield Target(
            "bare proxy",
            f"http://127.0.0.1:{port}",
            False,
            [f"Authorization: Bearer {UPSTREAM_KEY}"],
            pid=proc.pid,
        )
    finally:
        procs.stop(proc)


def ai_service_command() -> list[str]:
    script = Path(sys.executable).parent / "ai-service"
    return [str(script)] if script.exists() else python_module("ai_service")


def pool_settings(size: int) -> str:
    """`AI_SERVICE_POOLS` of `size` credentials per provider, all at the fake upstream."""
    entries = [{"label": f"k{i}", "key": f"{UPSTREAM_KEY}-{i}"} for i in range(1, size + 1)]
    return orjson.dumps({"openai": entries, "claude": entries}).decode()


def gateway_env(database_url: str, upstream: Upstream, src: Path | None) -> dict[str, str]:
    """The gateway's environment; `src` runs the `ai_service` package found there instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PROVIDER_PREFIXES)}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    env.update(
        AI_SERVICE_DATABASE_URL=database_url,
        AI_SERVICE_LOG_LEVEL="warning",
        OPENAI_API_KEY=UPSTREAM_KEY,
        OPENAI_BASE_URL=upstream.origin + "/v1",
        ANTHROPIC_API_KEY=UPSTREAM_KEY,
        ANTHROPIC_BASE_URL=upstream.origin,
    )
    # BENCH_GATEWAY_<NAME>=value sets <NAME> for the gateways (e.g. a setting to compare)
    env.update(
        (k.removeprefix(GATEWAY_PREFIX), v)
        for k, v in os.environ.items()
        if k.startswith(GATEWAY_PREFIX)
    )
    return env


def _cli(args: list[str], env: dict[str, str], log: Path, secret_last_line: bool = False) -> str:
    done = subprocess.run(
        ai_service_command() + args,
        cwd=procs.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    shown = done.stdout
    if secret_last_line and done.returncode == 0:
        shown = "\n".join([*done.stdout.strip().splitlines()[:-1], "[key not logged]"]) + "\n"
    with log.open("a") as out:
        out.write(f"$ ai-service {' '.join(args)}\n{shown}{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(f"ai-service {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


async def _pg(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def pg_version() -> str | None:
    async def query() -> str:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    try:
        return asyncio.run(query())
    except Exception:  # refused, or asyncpg's own errors: no PostgreSQL to bench on
        return None


def export_source(ref: str, into: Path) -> tuple[Path, str]:
    """`src/` of a git revision, unpacked with `git archive` (no change to the repository).

    Returns the directory to put on PYTHONPATH and the full commit id.
    """
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=procs.ROOT, capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "src"],
        cwd=procs.ROOT, capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    return into / "src", commit


def snapshot_source(into: Path) -> Path:
    """A copy of the working tree's `src/`, so that edits made during the run do not leak in."""
    into.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        procs.ROOT / "src", into / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    return into / "src"


@contextlib.contextmanager
def database(kind: str, tmp: Path) -> Iterator[tuple[str, str | None]]:
    """(database URL, PostgreSQL database name or None) of a fresh database for the run."""
    if kind == "sqlite":
        path = tmp / f"bench-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite:///{path}", None
        return
    name = f"aibench_{int(time.time())}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    COMMIT_MS[name] = pg_commit_ms(name)
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}", name
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def prepare(database_url: str, upstream: Upstream, logs: Path, src: Path | None) -> str:
    """Migrate the database and create the bench user; returns its key."""
    env = gateway_env(database_url, upstream, src)
    log = logs / "ai-service-cli.log"
    _cli(["db", "upgrade"], env, log)
    out = _cli(["users", "create", "bench", "--balance", "1000000"], env, log, True)
    return out.strip().splitlines()[-1].strip()


@contextlib.contextmanager
def ai_service(
    label: str,
    database_url: str,
    pg_name: str | None,
    key: str,
    upstream: Upstream,
    core: int | None,
    logs: Path,
    src: Path | None,
    workers: int = 1,
    instances: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[Target]:
    """`instances` separate `ai-service serve` processes on one database, each on its own
    port, all pinned to `core`; the load spreads over them (`Target.others`)."""
    slug = label.replace(" ", "-").replace("[", "").replace("]", "").replace(",", "")
    env = {**gateway_env(database_url, upstream, src), **(env or {})}
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for n in range(instances):
            port = procs.free_port()
            args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
            if workers > 1:
                args += ["--workers", str(workers)]
            log = logs / (f"{slug}.log" if n == 0 else f"{slug}-{n + 1}.log")
            proc = procs.spawn(ai_service_command() + args, core=core, env=env, log=log)
            started.append((f"http://127.0.0.1:{port}", proc))
            procs.wait_http(f"http://127.0.0.1:{port}/healthz", proc, log=log)
        if workers > 1:
            time.sleep(2.0)  # let every worker come up
        (origin, first), *rest = started
        yield Target(
            label,
            origin,
            True,
            [f"X-API-Key: {key}"],
            pid=first.pid,
            database=pg_name,
            others=[(o, p.pid) for o, p in rest],
        )
    finally:
        for _, proc in started:
            procs.stop(proc, timeout=40)


PG_COUNTERS = ("xact_commit", "xact_rollback", "sessions", "tup_inserted", "tup_updated")


def admin_rows(sql: str, *args: Any) -> list[Any] | None:
    """The rows of one query on the admin connection; None when it fails (the statistics
    the bench keeps are a diagnostic: never fail a run for them)."""

    async def query() -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    try:
        return asyncio.run(query())
    except Exception:
        return None


def pg_stats(name: str) -> dict[str, int] | None:
    """The cumulative counters of one database (PostgreSQL flushes them about every second)."""
    rows = admin_rows(
        "SELECT xact_commit, xact_rollback, sessions, tup_inserted, tup_updated "
        "FROM pg_stat_database WHERE datname = $1",
        name,
    )
    if rows is None:
        return None
    return {k: int(rows[0][k] or 0) for k in PG_COUNTERS} if rows else {}


def pg_commit_ms(name: str, count: int = 50) -> float | None:
    """Mean wall time of one small committed INSERT (the WAL flush the disk allows)."""

    async def probe() -> float:
        import asyncpg

        dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute("CREATE TABLE bench_commit_probe (n integer)")
            started = time.perf_counter()
            for n in range(count):
                await conn.execute("INSERT INTO bench_commit_probe VALUES ($1)", n)
            elapsed = time.perf_counter() - started
            await conn.execute("DROP TABLE bench_commit_probe")
        finally:
            await conn.close()
        return round(elapsed / count * 1000, 3)

    try:
        return asyncio.run(probe())
    except Exception:
        return None


def pg_settings() -> dict[str, str]:
    names = ("synchronous_commit", "fsync", "wal_sync_method", "max_connections", "shared_buffers")
    rows = admin_rows(
        "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])", list(names)
    )
    return {r["name"]: r["setting"] for r in rows or []}


def pg_connections(name: str) -> dict[str, Any] | None:
    """The sessions open on one database: all, the ledger's hot path's (by their last query:
    its reservations and settlements are the only statements that open with `WITH`), and each
    session's last query, shortened (pg_stat_activity keeps 1,024 bytes of it)."""
    rows = admin_rows(
        "SELECT state, query FROM pg_stat_activity "
        "WHERE datname = $1 AND backend_type = 'client backend'",
        name,
    )
    if rows is None:
        return None
    last = [" ".join(str(r["query"]).split())[:60] for r in rows]
    return {
        "total": len(rows),
        "ledger": sum(q.startswith("WITH ") for q in last),
        "last_queries": sorted(last),
    }


BATCH_METRIC = "ai_service_ledger_batch_size"


def ledger_batches(origin: str) -> dict[str, dict[str, float]]:
    """One gateway's group-commit histogram from `/metrics` (open, like `/healthz`):
    {kind: {"statements", "calls", "le=<bound>"...}}, empty for a gateway without it."""
    try:
        text = procs.get_text(origin + "/metrics")
    except OSError:
        return {}
    found: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith(BATCH_METRIC):
            continue
        name, _, value = line.rpartition(" ")
        series, _, labels = name.partition("{")
        fields = dict(
            part.split("=", 1) for part in labels.rstrip("}").replace('"', "").split(",") if part
        )
        kind = found.setdefault(fields.get("kind", "?"), {})
        suffix = series.removeprefix(BATCH_METRIC)
        if suffix == "_count":
            kind["statements"] = float(value)
        elif suffix == "_sum":
            kind["calls"] = float(value)
        elif suffix == "_bucket":
            kind[f"le={fields['le']}"] = float(value)
    return found
