"""The usage pages at volume: millions of request rows on PostgreSQL, timed as served.

    .venv/bin/python -m bench.volume [--rows 10000000] [--days 30] [--prune-days 20]

Makes a fresh database, writes `--rows` request rows spread over the last
`--days` days for 100 users (each with a key; payloads for the newest tenth),
starts `ai-service serve` on it and times each page (median of 5): a key
holder's `/ai/usage`, `/ai/account`, `/ai/key`; the admin API's usage summary,
daily series and request log; the dashboard's overview, users and request log.
Then it writes the daily totals (`ai-service db prune` with nothing to delete),
times the pages again, prunes the rows older than `--prune-days` and says how
long each step took. Results go to `bench/results/volume-<date>-<commit>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from ai_service import retention
from ai_service.billing.ledger import utcnow
from ai_service.services import accounts
from ai_service.storage.db import make_engine, session_factory, upgrade
from bench.procs import PYTHON, ROOT, free_port, stop, wait_http

DATABASE = "aisvc_volume"
SERVER = "postgresql://postgres@127.0.0.1:5432"
ADMIN = "volume-bench-admin-key-0123456789"
USERS = 100


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", sql], check=True)


async def fill(url: str, rows: int, days: int) -> str:
    """Users, keys and `rows` request rows; returns the first user's key."""
    engine = make_engine(url)
    try:
        secrets = []
        async with session_factory(engine)() as session:
            for n in range(USERS):
                secrets.append((await accounts.create_user(session, f"user-{n}", 10**12)).secret)
        start = utcnow() - dt.timedelta(days=days)
        step = dt.timedelta(days=days) // dt.timedelta(microseconds=1) // rows
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    """
                    INSERT INTO api_requests (request_id, surface, user_id, key_id, provider,
                        requested_model, model, stream, status, http_status, prompt_tokens,
                        completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens,
                        cost, uncollected, reserved, usage_estimated, default_price,
                        duration_ms, attempts, created_at, finished_at)
                    SELECT 'req-' || g, 'chat', 1 + g % :users, 1 + g % :users,
                        (ARRAY['openai', 'claude', 'mistral'])[1 + g % 3],
                        'model-' || (g % 7), 'model-' || (g % 7), g % 2 = 0,
                        CASE WHEN g % 50 = 0 THEN 'error' ELSE 'ok' END,
                        CASE WHEN g % 50 = 0 THEN 500 ELSE 200 END,
                        100 + g % 900, 20 + g % 400, g % 64, 0, 0,
                        1000 + g % 100000, 0, 0, false, false, 300, 1,
                        CAST(:start AS timestamptz) + g * CAST(:step AS bigint) * MICRO,
                        CAST(:start AS timestamptz) + g * CAST(:step AS bigint) * MICRO
                    FROM generate_series(1::bigint, :rows) AS g
                    """.replace("MICRO", "interval '1 microsecond'")
                ),
                {"users": USERS, "rows": rows, "start": start, "step": step},
            )
            await conn.execute(
                text(
                    "INSERT INTO api_request_data (request_id, request_body, response_body,"
                    ' truncated) SELECT request_id, \'{"model":"m"}\', \'{"id":"x"}\', false'
                    " FROM api_requests WHERE id > :newest"
                ),
                {"newest": rows - rows // 10},
            )
        return secrets[0]
    finally:
        await engine.dispose()


def timed(client: httpx.Client, path: str, **kwargs: Any) -> float:
    """The median of 5 GETs of `path`, in ms (each must answer 200)."""
    samples = []
    for _ in range(5):
        began = time.perf_counter()
        response = client.get(path, **kwargs)
        samples.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
    return round(statistics.median(samples), 1)


def pages(url: str, key: str) -> dict[str, float]:
    week = (utcnow() - dt.timedelta(days=7)).date().isoformat()
    user = {"X-API-Key": key}
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=url, timeout=600) as client:
        found = {
            "/ai/usage": timed(client, "/ai/usage", headers=user),
            "/ai/usage?since=7d": timed(client, f"/ai/usage?since={week}", headers=user),
            "/ai/account": timed(client, "/ai/account", headers=user),
            "/ai/key": timed(client, "/ai/key", headers=user),
            "admin usage/summary 30d": timed(
                client, "/ai/admin/api/usage/summary?since=" + _days_ago(30), headers=admin
            ),
            "admin usage/daily 30d": timed(
                client, "/ai/admin/api/usage/daily?days=30", headers=admin
            ),
            "admin requests": timed(client, "/ai/admin/api/requests", headers=admin),
        }
        login = client.post(
            "/ai/admin/login",
            data={"key": ADMIN, "next": "/ai/admin/"},
            headers={"Origin": url},
        )
        assert login.status_code in (200, 303), login.text[:200]
        found["dashboard overview 14d"] = timed(client, "/ai/admin/")
        found["dashboard overview 30d"] = timed(client, "/ai/admin/?days=30")
        found["dashboard users"] = timed(client, "/ai/admin/users")
        found["dashboard requests"] = timed(client, "/ai/admin/requests")
    return found


def _days_ago(days: int) -> str:
    return (utcnow() - dt.timedelta(days=days)).date().isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--prune-days", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--skip-before",
        action="store_true",
        help="do not time the pages before the daily totals (slow: a minute a page at 10M)",
    )
    args = parser.parse_args()
    url = f"{SERVER}/{DATABASE}"
    psql(f"DROP DATABASE IF EXISTS {DATABASE}")
    psql(f"CREATE DATABASE {DATABASE}")
    upgrade(url)
    steps: dict[str, float] = {}
    began = time.perf_counter()
    key = asyncio.run(fill(url, args.rows, args.days))
    psql_db = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-d", DATABASE, "-c"]
    subprocess.run([*psql_db, "VACUUM ANALYZE"], check=True)
    steps["write the rows (s)"] = round(time.perf_counter() - began, 1)
    port = free_port()
    env = {
        **os.environ,
        "AI_SERVICE_DATABASE_URL": url,
        "AI_SERVICE_ADMIN_KEY": ADMIN,
        "AI_SERVICE_LOG_LEVEL": "warning",
        "AI_SERVICE_RETENTION_INTERVAL_SECONDS": "86400",
    }
    server = subprocess.Popen(
        [PYTHON, "-m", "ai_service", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    result: dict[str, Any] = {"rows": args.rows, "days": args.days}
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", server)
        if not args.skip_before:
            result["pages before the daily totals (ms)"] = pages(base, key)

        async def total() -> retention.Report:
            engine = make_engine(url)
            try:
                return await retention.run(engine, retention.Policy(), utcnow())
            finally:
                await engine.dispose()

        began = time.perf_counter()
        report = asyncio.run(total())
        steps[f"write {len(report.days_totalled)} days' totals (s)"] = round(
            time.perf_counter() - began, 1
        )
        result["pages with the daily totals (ms)"] = pages(base, key)

        async def prune() -> retention.Report:
            engine = make_engine(url)
            try:
                policy = retention.Policy(
                    payload_days=args.prune_days, request_days=args.prune_days
                )
                return await retention.run(engine, policy, utcnow())
            finally:
                await engine.dispose()

        began = time.perf_counter()
        report = asyncio.run(prune())
        steps[
            f"prune {report.requests} rows and {report.payloads} payloads"
            f" older than {args.prune_days} days (s)"
        ] = round(time.perf_counter() - began, 1)
        result["pages after pruning (ms)"] = pages(base, key)
    finally:
        stop(server)
    result["steps"] = steps
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    out = ROOT / "bench" / "results" / f"volume-{utcnow().date()}-{commit}.json"
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not args.keep:
        psql(f"DROP DATABASE IF EXISTS {DATABASE}")


if __name__ == "__main__":
    main()
