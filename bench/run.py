"""`make bench`: direct vs bare proxy vs ai-service, on loopback, with billing on.

    python -m bench.run                 # full run (2 rounds, alternating order), about 8 minutes
    python -m bench.run --quick         # about 80 s: 0.5 s warm-up + 1.5 s per run, no workers row
    python -m bench.run --ref HEAD      # the committed code, not the working tree
    python -m bench.run --profile       # py-spy profile of ai-service[pg] under json-c64

Prints a table and the goals of issue 4, and saves everything as JSON in
bench/results/<date>-<commit>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import machine, procs, report, targets, tracing
from bench.scenarios import CHUNK_INTERVAL_MS, CHUNKS, FULL, QUICK, SCENARIOS, Scenario, Timing

RESULTS = procs.ROOT / "bench" / "results"
TARGET_KEYS = ("direct", "bare", "pg", "sqlite", "pg-workers", "pg-2x", "pg-otel")
PG_KEYS = ("pg", "pg-workers", "pg-2x", "pg-otel")
OPT_IN = ("pg-2x", "pg-otel")  # only with --targets

TargetFactory = Callable[[], AbstractContextManager[targets.Target]]


@dataclass
class Bench:
    """What every run of one bench invocation shares."""

    upstream: targets.Upstream
    server_core: int | None
    load_core: int | None
    tmp: Path
    src: Path | None  # the ai_service sources to run (None: the installed package)
    baseline: tuple[str, Path] | None = None  # (label suffix, sources) of --baseline
    rate_limit_headers: bool = False  # the fake's answers carry x-ratelimit-* (--pool)

    def gateway(
        self, kind: str, label: str, workers: int = 1, src: Path | None = None, instances: int = 1
    ) -> TargetFactory:
        src = src or self.src

        @contextlib.contextmanager
        def start() -> Iterator[targets.Target]:
            with targets.database(kind, self.tmp) as (url, pg_name):
                key = targets.prepare(url, self.upstream, self.tmp, src)
                with targets.ai_service(
                    label, url, pg_name, key, self.upstream, self.server_core, self.tmp,
                    src, workers=workers, instances=instances,
                ) as target:  # fmt: skip
                    yield target

        return start

    def load(self, target: targets.Target, scenario: Scenario, timing: Timing) -> dict[str, Any]:
        """One load-generator run against `target`; returns the generator's JSON."""
        self.upstream.configure(
            scenario.delay_ms, CHUNKS, CHUNK_INTERVAL_MS, self.rate_limit_headers
        )
        body = self.tmp / f"{scenario.key}.json"
        body.write_bytes(scenario.body())
        out = self.tmp / "load.json"
        out.unlink(missing_ok=True)
        args = [
            *(a for url in target.urls(scenario.api) for a in ("--url", url)),
            "--body-file", str(body),
            "-c", str(scenario.concurrency),
            "--warmup", str(timing.warmup),
            "--duration", str(timing.duration),
            "--watch", f"upstream={self.upstream.proc.pid}",
            "--out", str(out),
        ]  # fmt: skip
        if target.pids:  # every instance's process tree, summed
            args += ["--watch", "server=" + ",".join(map(str, target.pids))]
        if target.database is not None:
            args += ["--watch", f"db=pg:{target.database}"]
        for header in [*target.headers, *scenario.headers()]:
            args += ["--header", header]
        before = targets.pg_stats(target.database) if target.database else None
        batches = [targets.ledger_batches(o) for o in target.origins] if target.gateway else []
        sessions: list[int] = []
        proc = procs.spawn(
            targets.python_module("bench.loadgen", *args), core=self.load_core, log=None
        )
        deadline = time.monotonic() + timing.warmup + timing.duration + 90
        while proc.poll() is None:
            if time.monotonic() > deadline:
                procs.stop(proc)
                raise RuntimeError(f"{target.name} {scenario.key}: the load generator hung")
            if target.database is not None:  # keep the gateway's core to itself
                backends = procs.pg_backends(target.database)
                procs.pin(backends, self.load_core)
                sessions.append(len(backends))
            time.sleep(0.25)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{target.name} {scenario.key}: the load generator failed")
        result: dict[str, Any] = orjson.loads(out.read_bytes())
        if batches:
            after_batches = [targets.ledger_batches(o) for o in target.origins]
            result["ledger_batches"] = [
                _difference(a, b) for a, b in zip(after_batches, batches, strict=True)
            ]
        if target.database is not None and sessions:
            result["pg_sessions"] = {
                "max": max(sessions),
                "mean": round(sum(sessions) / len(sessions), 1),
                "after": targets.pg_connections(target.database),
                "instances": len(target.origins),
            }
        if target.database is not None and before is not None:
            time.sleep(1.2)  # backends flush their statistics about once a second
            after = targets.pg_stats(target.database)
            if after is not None:
                result["pg_stats"] = {k: after[k] - before.get(k, 0) for k in after}
            result["pg_commit_ms"] = targets.COMMIT_MS.get(target.database)
        return result

    def plan(self, chosen: list[str], workers: int) -> list[tuple[str, TargetFactory, bool]]:
        """(label, start, workers-row only) for each chosen target, in run order."""
        steps: list[tuple[str, TargetFactory, bool]] = []
        for key in chosen:
            if key == "direct":
                steps.append(("direct", lambda: targets.direct(self.upstream), False))
            elif key == "bare":

                def bare() -> AbstractContextManager[targets.Target]:
                    return targets.bare_proxy(self.upstream, self.server_core, self.tmp)

                steps.append((report.BARE, bare, False))
            elif key in ("pg", "sqlite"):
                label = report.PG if key == "pg" else report.SQLITE
                steps.append((label, self.gateway(key, label), False))
                if self.baseline is not None:  # the same gateway at the baseline revision
                    suffix, src = self.baseline
                    other = f"{label} {suffix}"
                    steps.append((other, self.gateway(key, other, src=src), False))
            elif key == "pg-2x":
                steps.append((report.PG_2X, self.gateway("pg", report.PG_2X, instances=2), False))
            elif key == "pg-otel":  # tracing on, exported to a sink (bench.tracing)
                steps.append((tracing.LABEL, tracing.target(self), False))
            elif key == "pg-workers" and workers > 1:
                label = f"ai-service[pg] {workers} workers"
                steps.append((label, self.gateway("pg", label, workers), True))
        return steps


@contextlib.contextmanager
def bench(ref: str | None, baseline: str | None = None) -> Iterator[tuple[Bench, str | None]]:
    """The fake upstream and the sources to run; yields the bench and the commit of `ref`.

    With `baseline`, the gateway rows also run that revision's sources, interleaved
    with the others in every round (a paired before/after in one run).
    """
    server, load = procs.cores()
    procs.pin([0], load)  # this process (mostly idle) stays off the server's core
    with tempfile.TemporaryDirectory(prefix="ai-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if ref is not None:
            src, commit = targets.export_source(ref, tmp / "source")
        else:
            src, commit = targets.snapshot_source(tmp / "source"), None
        old: tuple[str, Path] | None = None
        if baseline is not None:
            old_src, old_commit = targets.export_source(baseline, tmp / "baseline")
            old = (f"@{old_commit[:7]}", old_src)
        with targets.fake_upstream(load, tmp) as upstream:
            yield Bench(upstream, server, load, tmp, src, old), commit


def measure(
    b: Bench,
    chosen: list[str],
    scenarios: list[Scenario],
    timing: Timing,
    workers: int,
    rounds: int = 1,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, list[Any]]]]:
    """Every (target, scenario) run: (derived rows, raw load-generator output per round).

    With several rounds the targets after `direct` run in alternating order
    (A B C, then C B A, ...), so a machine that speeds up or slows down during
    the run weighs on every target alike; each row is then the rounds' mean.
    """
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {s.key: {} for s in scenarios}
    raw: dict[str, dict[str, list[Any]]] = {s.key: {} for s in scenarios}
    steps = b.plan(chosen, workers)
    for n in range(rounds):
        first = steps[:1] if steps and steps[0][0] == "direct" else []
        rest = steps[len(first) :]
        order = first + (rest if n % 2 == 0 else rest[::-1])
        for label, start, workers_only in order:
            todo = [s for s in scenarios if s.workers_row or not workers_only]
            if not todo:
                continue
            with start() as target:
                for scenario in todo:
                    lead = f"  {label:<28} {scenario.key:<18}"
                    print(lead if rounds == 1 else f"{lead}r{n + 1}", end="", flush=True)
                    out = b.load(target, scenario, timing)
                    raw[scenario.key].setdefault(label, []).append(out)
                    runs = raw[scenario.key].get("direct", [])
                    direct = runs[-1] if runs and label != "direct" else None
                    core = None if label == "direct" else b.server_core
                    row = report.derive(out, direct, core)
                    rows[scenario.key].setdefault(label, []).append(row)
                    _print_run(row)
    results = {key: {label: report.merge(r) for label, r in by.items()} for key, by in rows.items()}
    return results, raw


def _difference(
    after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """`after - before` of two scrapes of one gateway's batch-size histogram."""
    return {
        kind: {k: v - before.get(kind, {}).get(k, 0.0) for k, v in values.items()}
        for kind, values in after.items()
    }


def _print_run(row: dict[str, Any]) -> None:
    busy = " ".join(
        f"cpu{c} {s / row['window_s'] * 100:.0f}%" for c, s in row["core_busy_s"].items()
    )
    print(
        f"{row['rps']:>8.0f} rps {row['cpu_ms_per_request'] or 0:7.3f} ms CPU/req "
        f"{row['failures']:>3} failed  ({busy})"
    )


def keep_logs(tmp: Path, info: dict[str, Any]) -> Path:
    """Copy the servers' logs out of the temporary directory (outside the repository)."""
    name = machine.result_name(info, False).removesuffix(".json")
    into = Path(tempfile.gettempdir()) / f"ai-bench-logs-{name}"
    into.mkdir(exist_ok=True)
    for log in tmp.glob("*.log"):
        shutil.copy(log, into / log.name)
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short windows, no workers row")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per run")
    parser.add_argument("--duration", type=float, help="seconds measured per run")
    parser.add_argument(
        "--rounds", type=int, help="rounds of every run, in alternating order (full: 2)"
    )
    parser.add_argument("--targets", help=f"comma-separated, of {','.join(TARGET_KEYS)}")
    parser.add_argument("--scenarios", default=",".join(s.key for s in SCENARIOS))
    parser.add_argument("--workers", type=int, default=2, help="workers of the extra row")
    parser.add_argument("--ref", help="bench this git revision's src/ (e.g. HEAD)")
    parser.add_argument(
        "--baseline", help="also run the gateway rows at this revision, interleaved (before/after)"
    )
    parser.add_argument(
        "--pool",
        type=int,
        metavar="N",
        help="the gateways serve OpenAI and Anthropic through a pool of N credentials (a "
        "revision without pools uses its one key), and the fake sends rate-limit headers",
    )
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/...)")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--profile", nargs="?", const="json-c64", metavar="SCENARIO")
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    parser.add_argument(
        "--profile-target", choices=("pg", "bare"), default="pg", help="what --profile samples"
    )
    args = parser.parse_args(argv)

    if args.profile:
        from bench import profile

        return profile.main(args.profile, args.profile_seconds, args.ref, args.profile_target)

    base = QUICK if args.quick else FULL
    timing = Timing(
        args.warmup or base.warmup, args.duration or base.duration, args.rounds or base.rounds
    )
    if args.targets is None:
        chosen = [
            k for k in TARGET_KEYS if k not in OPT_IN and not (args.quick and k == "pg-workers")
        ]
    else:
        chosen = [k for k in args.targets.split(",") if k]
    unknown = set(chosen) - set(TARGET_KEYS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    keys = [k for k in args.scenarios.split(",") if k]
    unknown = set(keys) - {s.key for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    scenarios = [s for s in SCENARIOS if s.key in keys]
    if set(PG_KEYS) & set(chosen) and targets.pg_version() is None:
        print("warning: no PostgreSQL on 127.0.0.1:5432: the PostgreSQL rows are skipped")
        chosen = [k for k in chosen if k not in PG_KEYS]

    if args.pool is not None:
        if args.pool < 1:
            parser.error("--pool needs 1 credential or more")
        # as BENCH_GATEWAY_<NAME> does for any setting
        os.environ[targets.GATEWAY_PREFIX + "AI_SERVICE_POOLS"] = targets.pool_settings(args.pool)

    started = time.monotonic()
    with bench(args.ref, args.baseline) as (b, commit):
        b.rate_limit_headers = args.pool is not None
        if b.server_core is None:
            print(
                "warning: fewer than 2 CPUs: nothing is pinned; CPU per request is still measured"
            )
        info = machine.describe(b.server_core, b.load_core, args.ref, commit)
        print(machine.summary(info))
        try:
            results, raw = measure(b, chosen, scenarios, timing, args.workers, timing.rounds)
        finally:
            logs = keep_logs(b.tmp, info)
        info["background_load_after"] = machine.background_busy()

    print()
    print(report.table(results, {s.key: s.title for s in scenarios}))
    for text in (
        report.streams_text(results),
        report.paired_text(results),
        report.database_text(results),
    ):
        if text is not None:
            print()
            print(text)
    evaluated = {}
    for label in (report.PG, report.SQLITE):
        if any(label in rows for rows in results.values()):
            evaluated[label] = report.goals(results, label)
            print()
            print(report.goals_text(evaluated[label], label))
    data = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "pool": args.pool,
        "timing": {"warmup_s": timing.warmup, "duration_s": timing.duration,
                   "rounds": timing.rounds},
        "fake_upstream": {"chunks": CHUNKS, "chunk_interval_ms": CHUNK_INTERVAL_MS},
        "scenarios": {s.key: {"title": s.title, "api": s.api, "concurrency": s.concurrency,
                              "stream": s.stream, "upstream_delay_ms": s.delay_ms}
                      for s in scenarios},
        "machine": info,
        "results": results,
        "cpu_vs_bare": report.cpu_vs_bare(results),
        "paired": report.paired(results),
        "goals": evaluated,
        "raw": raw,
        "elapsed_s": round(time.monotonic() - started, 1),
    }  # fmt: skip
    if not args.no_save:
        path = args.out or RESULTS / machine.result_name(info, args.quick)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        shown = path.relative_to(procs.ROOT) if path.is_relative_to(procs.ROOT) else path
        print(f"\nsaved {shown}; server logs in {logs}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
