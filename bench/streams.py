"""Many long, low-rate streams at once: what one gateway holds, and what each costs.

`python -m bench.streams` opens N streams (1,000 and 5,000 by default), each on
its own connection, spread over a ramp shorter than a stream, so that all N
are open at once; the fake upstream sends each a first token after `--first-ms`
and then a chunk every `--interval-ms`. Per target (the fake upstream `direct`,
ai-service on SQLite and PostgreSQL, and `--workers 2` on PostgreSQL) it
reports the time to first token (p50/p99, and added over direct at the same
N), failures by kind, the server's resident memory per open stream (its peak
while no stream has ended yet, minus its idle size, over N), and its CPU time
per stream.

`--slow` instead measures back-pressure: every client reads 1 KB a second
while the upstream sends a whole long answer at once; the gateway's memory
per stream must stay bounded (its peak, not the upstream's answer, per stream).

    .venv/bin/python -m bench.streams                               # working tree
    .venv/bin/python -m bench.streams --ref main --streams 1000    # a revision's src/
    .venv/bin/python -m bench.streams --slow --streams 1000 --targets sqlite

The load generator is a process of its own (`generate`), on the load core with
the fake upstream; the gateway is on the server core, as in `bench.run`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import loadgen, machine, procs, targets
from bench.scenarios import Scenario

STREAM = Scenario("long", "long low-rate stream", True, 1)
TARGETS = ("direct", "sqlite", "pg", "pg-w2")


# ---- the load generator (a process of its own) -------------------------------------------


def rss_mb(root: int) -> float:
    """Resident memory of a process tree, MiB."""
    total = 0
    for pid in procs.tree_pids(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


async def one_stream(host: str, port: int, payload: bytes, api: loadgen.Api) -> loadgen.Outcome:
    loop = asyncio.get_running_loop()
    try:
        _, conn = await loop.create_connection(lambda: loadgen.Conn(True, api), host, port)
    except OSError:
        return loadgen.Outcome(False, "connect")
    try:
        return await asyncio.wait_for(conn.request(payload), 600)
    except TimeoutError:
        return loadgen.Outcome(False, "timeout")
    finally:
        conn.close()


async def slow_stream(host: str, port: int, payload: bytes, seconds: float) -> loadgen.Outcome:
    """A client that reads 1 KB a second for `seconds`, then hangs up."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(host, port, limit=1024)
    sock = writer.get_extra_info("socket")
    try:
        writer.write(payload)
        head = await reader.read(1024)
        if not head.startswith(b"HTTP/1.1 200"):
            return loadgen.Outcome(False, "status_" + head[9:12].decode(errors="replace"))
        started = loop.time()
        while loop.time() - started < seconds:
            await asyncio.sleep(1.0)
            if not await reader.read(1024):
                return loadgen.Outcome(False, "ended")
        return loadgen.Outcome(True)
    finally:
        del sock
        writer.close()


async def generate(args: argparse.Namespace) -> dict[str, Any]:
    endpoint, api = loadgen.build_request(args.url, args.body.encode(), args.header)
    host, port, payload = endpoint.host, endpoint.port, endpoint.payload
    n, ramp, watch = args.streams, args.ramp, args.watch
    loop = asyncio.get_running_loop()
    idle = rss_mb(watch) if watch else 0.0
    cpu0 = procs.tree_cpu(watch) if watch else 0.0
    peak = idle
    tasks: list[asyncio.Task[loadgen.Outcome]] = []
    start = loop.time()

    ended = 0

    def end(_: object) -> None:
        nonlocal ended
        ended += 1

    async def sample() -> None:
        """The peak while every stream opened so far is still open (not their settlements)."""
        nonlocal peak
        while not ended:
            rss = rss_mb(watch)
            if not ended:
                peak = max(peak, rss)
            await asyncio.sleep(0.5)

    sampler = asyncio.ensure_future(sample()) if watch else None
    for i in range(n):
        due = start + ramp * i / n
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        if args.slow:
            work = slow_stream(host, port, payload, args.slow_seconds)
        else:
            work = one_stream(host, port, payload, api)
        task = asyncio.ensure_future(work)
        task.add_done_callback(end)
        tasks.append(task)
    outcomes = await asyncio.gather(*tasks)
    if sampler is not None:
        sampler.cancel()
    cpu = (procs.tree_cpu(watch) - cpu0) if watch else 0.0
    failures = Counter(o.reason for o in outcomes if not o.ok)
    ttfts = [o.ttft for o in outcomes if o.ok and o.ttft is not None]
    return {
        "streams": n,
        "ok": sum(1 for o in outcomes if o.ok),
        "failures": dict(failures),
        "ttft_ms": loadgen.percentiles(ttfts),
        "wall_s": round(loop.time() - start, 2),
        "rss_idle_mb": round(idle, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_per_stream_kb": round((peak - idle) * 1024 / n, 1),
        "cpu_s": round(cpu, 2),
        "cpu_per_stream_ms": round(cpu * 1000 / n, 2),
    }


# ---- the runner ----------------------------------------------------------------------------


def run_load(
    target: targets.Target, n: int, args: argparse.Namespace, load_core: int | None
) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "bench.streams", "generate", "--url", target.url("chat"),
        "--body", STREAM.body().decode(), "--streams", str(n), "--ramp", str(args.ramp),
    ]  # fmt: skip
    for header in target.headers:
        cmd += ["--header", header]
    if target.pid is not None and target.gateway:
        cmd += ["--watch", str(target.pid)]
    if args.slow:
        cmd += ["--slow", "--slow-seconds", str(args.slow_seconds)]
    prefix = ["taskset", "-c", str(load_core)] if load_core is not None else []
    done = subprocess.run(
        prefix + cmd, cwd=procs.ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@contextlib.contextmanager
def start(
    name: str, upstream: targets.Upstream, tmp: Path, src: Path, core: int | None
) -> Iterator[targets.Target]:
    if name == "direct":
        with targets.direct(upstream) as target:
            yield target
        return
    kind = "sqlite" if name.startswith("sqlite") else "pg"
    workers = 2 if name.endswith("-w2") else 1
    label = f"ai-service[{kind}]" + (" 2 workers" if workers > 1 else "")
    with targets.database(kind, tmp) as (url, pg_name):
        key = targets.prepare(url, upstream, tmp, src)
        with targets.ai_service(
            label, url, pg_name, key, upstream, core, tmp, src, workers
        ) as target:
            time.sleep(1.0)  # let the idle memory settle before it is read
            yield target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    gen = sub.add_parser("generate", help="the load generator (run by the runner)")
    gen.add_argument("--url", required=True)
    gen.add_argument("--body", required=True)
    gen.add_argument("--header", action="append", default=[])
    gen.add_argument("--streams", type=int, required=True)
    gen.add_argument("--ramp", type=float, default=10.0)
    gen.add_argument("--watch", type=int, default=0)
    gen.add_argument("--slow", action="store_true")
    gen.add_argument("--slow-seconds", type=float, default=30.0)
    parser.add_argument("--streams", default="1000,5000")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--ref", help="run this revision's src/ (default: the working tree)")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds to open the streams")
    parser.add_argument("--chunks", type=int, default=30)
    parser.add_argument("--interval-ms", type=float, default=1000.0)
    parser.add_argument("--first-ms", type=float, default=50.0)
    parser.add_argument("--slow", action="store_true", help="clients reading 1 KB/s")
    parser.add_argument("--slow-seconds", type=float, default=30.0)
    parser.add_argument("--slow-chunks", type=int, default=4000)
    parser.add_argument("--out", help="the JSON result (default bench/results/streams-...)")
    args = parser.parse_args(argv)
    if args.command == "generate":
        print(orjson.dumps(uvloop.run(generate(args))).decode())
        return 0
    counts = [int(n) for n in args.streams.split(",")]
    names = args.targets.split(",")
    server, load = procs.cores()
    procs.pin([0], load)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ai-streams-") as tmp_name:
        tmp = Path(tmp_name)
        if args.ref:
            src, commit = targets.export_source(args.ref, tmp / "source")
        else:
            src, commit = targets.snapshot_source(tmp / "source"), None
        info = machine.describe(server, load, args.ref, commit)
        print(machine.summary(info))
        with targets.fake_upstream(load, tmp) as upstream:
            chunks = args.slow_chunks if args.slow else args.chunks
            interval = 0.0 if args.slow else args.interval_ms
            upstream.configure(0.0, chunks, interval)
            procs.post_json(
                upstream.origin + "/_bench/config",
                orjson.dumps({"first_ms": 0.0 if args.slow else args.first_ms}),
            )
            for n in counts:
                for name in names:
                    if args.slow and name == "direct":
                        continue
                    with start(name, upstream, tmp, src, server) as target:
                        out = run_load(target, n, args, load)
                    results[f"{name}@{n}"] = out
                    print(f"  {name:<8} {n:>5} streams: {row(out)}", flush=True)
    info["streams"] = {"args": vars(args), "results": results}
    kind = "slow" if args.slow else "long"
    name = f"streams-{kind}-{info['short_commit']}-{int(time.time())}.json"
    out_path = Path(args.out or procs.ROOT / "bench" / "results" / name)
    out_path.write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    print(f"saved {out_path}")
    return 0


def row(out: dict[str, Any]) -> str:
    ttft = out["ttft_ms"] or {}
    return (
        f"ok {out['ok']}/{out['streams']}  ttft p50 {ttft.get('p50', '-')} ms"
        f" p99 {ttft.get('p99', '-')} ms  rss {out['rss_peak_mb']} MiB"
        f" ({out['rss_per_stream_kb']} KiB/stream)  cpu {out['cpu_per_stream_ms']} ms/stream"
        f"  failures {out['failures'] or 0}  wall {out['wall_s']} s"
    )


if __name__ == "__main__":
    sys.exit(main())
