"""Numbers derived from the load generator's output, the goals of issue 4, the printed table.

Per scenario and target: requests per second, latency p50/p99, latency added
over `direct` (the fake upstream called without a proxy), the server's CPU
milliseconds per request (its process tree, workers included) and its ratio to
the bare proxy's, the CPU of its PostgreSQL backends per request, and failures.
Streams add the time to the first content token (TTFT) and the TTFT added over
direct. With a baseline revision's rows, each gateway row is compared with its
baseline row. PostgreSQL rows add what the gateways asked of the database
(`database`): the ledger's statements and the group commit's batches per
request, commits, and the sessions held (`database_text`).
"""

from __future__ import annotations

from typing import Any

from bench.scenarios import CHUNKS

DIRECT = "direct"
BARE = "bare proxy"
PG = "ai-service[pg]"
SQLITE = "ai-service[sqlite]"
PG_2X = "ai-service[pg] 2 instances"


def _sub(a: dict[str, float] | None, b: dict[str, float] | None, key: str) -> float | None:
    if not a or not b:
        return None
    return round(a[key] - b[key], 3)


def _db_per_request(raw: dict[str, Any]) -> dict[str, float] | None:
    """PostgreSQL counters per request over the whole run (warm-up included; approximate)."""
    stats, total = raw.get("pg_stats"), raw.get("requests_total")
    if not stats or not total:
        return None
    per = {k: round(v / total, 3) for k, v in stats.items()}
    per["commit_ms"] = raw.get("pg_commit_ms")
    return per


def _database(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The ledger's statements (every instance's `ai_service_ledger_batch_size`, summed),
    commits and sessions, per request of the whole run (warm-up included)."""
    total = raw.get("requests_total")
    scrapes = raw.get("ledger_batches")
    if not total or not scrapes:
        return None
    kinds: dict[str, dict[str, float]] = {}
    for scrape in scrapes:
        for kind, values in scrape.items():
            into = kinds.setdefault(kind, {})
            for key, value in values.items():
                into[key] = into.get(key, 0.0) + value
    out: dict[str, Any] = {"instances": len(scrapes)}
    statements = calls = 0.0
    for kind, values in sorted(kinds.items()):
        n, c = values.get("statements", 0.0), values.get("calls", 0.0)
        statements, calls = statements + n, calls + c
        out[kind] = {
            "statements_per_request": round(n / total, 4),
            "mean_batch": round(c / n, 2) if n else None,
            "buckets": {k: v for k, v in values.items() if k.startswith("le=")},
        }
    out["statements_per_request"] = round(statements / total, 4)
    out["calls_per_request"] = round(calls / total, 3)
    stats = raw.get("pg_stats")
    if stats:  # approximate: an idle backend may hold its counts for up to 10 s
        out["commits_per_request"] = round(stats.get("xact_commit", 0) / total, 4)
    if raw.get("pg_sessions"):
        out["sessions"] = raw["pg_sessions"]
    return out


def derive(
    raw: dict[str, Any], direct: dict[str, Any] | None, server_core: int | None = None
) -> dict[str, Any]:
    """The reported numbers of one (scenario, target) run."""
    requests = raw["requests"] or 0
    cpu = raw["cpu_s"]
    window = raw["window_s"] or 1.0
    row: dict[str, Any] = {
        "rps": raw["rps"],
        "rps_window": raw.get("rps_window"),
        "requests": requests,
        "latency_ms": raw["latency_ms"],
        "ttft_ms": raw["ttft_ms"],
        "failures": raw["failures"],
        "failure_kinds": raw["failure_kinds"],
        "cpu_ms_per_request": round(cpu["server"] * 1000 / requests, 3) if requests else None,
        "server_core_busy_pct": round(cpu["server"] / window * 100, 1),
        "others_on_server_core_pct": (
            round((raw["core_busy_s"][str(server_core)] - cpu["server"]) / window * 100, 1)
            if server_core is not None and str(server_core) in raw["core_busy_s"]
            else None
        ),
        "db_cpu_ms_per_request": (
            round(cpu["db"] * 1000 / requests, 3) if "db" in cpu and requests else None
        ),
        "upstream_cpu_ms_per_request": (
            round(cpu["upstream"] * 1000 / requests, 3) if requests else None
        ),
        "core_busy_s": raw["core_busy_s"],
        "db_per_request": _db_per_request(raw),
        "database": _database(raw),
        "window_s": window,
    }
    if direct is not None:
        for name, field in (("latency", "latency_ms"), ("ttft", "ttft_ms")):
            for q in ("p50", "p99"):
                row[f"added_{name}_{q}_ms"] = _sub(raw[field], direct[field], q)
        row["throughput_vs_direct"] = (
            round(raw["rps"] / direct["rps"], 4) if direct["rps"] else None
        )
        if raw.get("rps_window") and direct.get("rps_window"):
            row["throughput_vs_direct_window"] = round(raw["rps_window"] / direct["rps_window"], 4)
    return row


SUMMED = ("requests", "failures", "failure_kinds", "window_s", "core_busy_s")


def merge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rows of several rounds: counts summed, every other number averaged."""
    if len(rows) == 1:
        return rows[0]

    def combine(values: list[Any], total: bool) -> Any:
        present = [v for v in values if v is not None]
        if not present:
            return None
        if isinstance(present[0], dict):
            keys = {k for v in present for k in v}
            return {k: combine([v.get(k) for v in present], total) for k in sorted(keys)}
        if isinstance(present[0], bool) or not isinstance(present[0], int | float):
            return present[0]
        if total:
            return round(sum(present), 3)
        return round(sum(present) / len(present), 4)

    merged = {key: combine([r.get(key) for r in rows], key in SUMMED) for key in rows[0]}
    merged["rounds"] = len(rows)
    return merged


def _get(results: dict[str, dict[str, Any]], scenario: str, target: str) -> dict[str, Any] | None:
    return results.get(scenario, {}).get(target)


def _cpu_ratio(results: dict[str, dict[str, Any]], scenario: str, target: str) -> float | None:
    """The target's CPU per request over the bare proxy's, in one scenario."""
    gw, bare = _get(results, scenario, target), _get(results, scenario, BARE)
    if gw and bare and gw["cpu_ms_per_request"] and bare["cpu_ms_per_request"]:
        return float(gw["cpu_ms_per_request"] / bare["cpu_ms_per_request"])
    return None


def goals(results: dict[str, dict[str, Any]], target: str = PG) -> list[dict[str, Any]]:
    """Issue 4's goals, evaluated on `target` (met: True/False, or None when not measured)."""
    out: list[dict[str, Any]] = []

    def add(goal: str, limit: str, value: float | None, met: bool | None, unit: str = "") -> None:
        shown = None if value is None else round(value, 3)
        out.append({"goal": goal, "limit": limit, "measured": shown, "unit": unit, "met": met})

    ratio = _cpu_ratio(results, "json-c64", target)
    add(
        "CPU per non-streamed request at c=64, vs bare proxy",
        "<= 3x",
        ratio,
        None if ratio is None else ratio <= 3.0,
        "x",
    )
    one = _get(results, "json-c1", target)
    for q, limit in (("p50", 2.0), ("p99", 5.0)):
        value = one.get(f"added_latency_{q}_ms") if one else None
        add(
            f"latency added over direct at c=1, {q}",
            f"<= {limit:g} ms",
            value,
            None if value is None else value <= limit,
            "ms",
        )
    slow = _get(results, "json-c64-delay200", target)
    value = slow.get("throughput_vs_direct") if slow else None
    add(
        "throughput with a 200 ms upstream at c=64, vs direct",
        ">= 97%",
        None if value is None else value * 100,
        None if value is None else value >= 0.97,
        "%",
    )
    stream = _get(results, "sse-c1", target)
    value = stream.get("added_ttft_p50_ms") if stream else None
    add(
        f"time to first token added over direct ({CHUNKS}-chunk stream, c=1, p50)",
        "<= 2 ms",
        value,
        None if value is None else value <= 2.0,
        "ms",
    )
    ratio = _cpu_ratio(results, "sse-c64", target)
    add(
        "CPU per stream at c=64, vs bare proxy",
        "<= 1.5x",
        ratio,
        None if ratio is None else ratio <= 1.5,
        "x",
    )
    failures = sum(row["failures"] for rows in results.values() for row in rows.values())
    add("failed requests and truncated streams, all runs", "0", failures, failures == 0)
    return out


def _num(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def table(results: dict[str, dict[str, Any]], titles: dict[str, str]) -> str:
    """The results as a plain-text table, one block per scenario."""
    lines: list[str] = []
    for scenario, rows in results.items():
        stream = any(row["ttft_ms"] for row in rows.values())
        lines.append(f"{scenario}: {titles.get(scenario, '')}")
        head = f"  {'target':<26}{'rps':>7}{'p50':>9}{'p99':>9}{'+p50':>9}{'+p99':>9}"
        if stream:
            head += f"{'ttft50':>8}{'+ttft50':>9}{'+ttft99':>9}"
        head += f"{'CPU/req':>9}{'xbare':>7}{'DB/req':>8}{'core%':>6}{'other%':>7}"
        head += f"{'vs dir':>8}{'fail':>5}"
        lines.append(head)
        for target, row in rows.items():
            lat = row["latency_ms"] or {}
            line = (
                f"  {target:<26}{row['rps']:>7.0f}{_num(lat.get('p50')):>9}"
                f"{_num(lat.get('p99')):>9}"
                f"{_num(row.get('added_latency_p50_ms'), signed=True):>9}"
                f"{_num(row.get('added_latency_p99_ms'), signed=True):>9}"
            )
            if stream:
                ttft = row["ttft_ms"] or {}
                line += (
                    f"{_num(ttft.get('p50')):>8}"
                    f"{_num(row.get('added_ttft_p50_ms'), signed=True):>9}"
                    f"{_num(row.get('added_ttft_p99_ms'), signed=True):>9}"
                )
            ratio = row.get("throughput_vs_direct")
            others = row.get("others_on_server_core_pct")
            bare = _cpu_ratio(results, scenario, target) if target not in (DIRECT, BARE) else None
            line += (
                f"{_num(row['cpu_ms_per_request'], 3):>9}"
                f"{_num(bare):>7}"
                f"{_num(row['db_cpu_ms_per_request'], 3):>8}"
                f"{row['server_core_busy_pct']:>6.0f}"
                f"{'-' if others is None else f'{others:.0f}':>7}"
                f"{'-' if ratio is None else f'{ratio * 100:.1f}%':>8}"
                f"{row['failures']:>5}"
            )
            lines.append(line)
        lines.append("")
    lines += [
        "rps: requests (streams) per second; p50/p99: latency of the whole answer, ms; "
        "+p50/+p99: added over direct, ms;",
        "ttft50: ms to the first content token; +ttft50/+ttft99: added over direct; "
        "CPU/req: the server's process tree,",
        "CPU ms per request; xbare: CPU/req over the bare proxy's; "
        "DB/req: its PostgreSQL backends' CPU ms per request;",
        "core%: the server's CPU time / wall time; "
        "other%: other processes' share of the server's core;",
        "vs dir: throughput / direct's; fail: failed or truncated.",
    ]
    return "\n".join(lines)


def cpu_vs_bare(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Every gateway row's CPU per request over the bare proxy's: {scenario: {target: x}}."""
    out: dict[str, dict[str, float]] = {}
    for scenario, rows in results.items():
        for target in rows:
            ratio = _cpu_ratio(results, scenario, target) if target not in (DIRECT, BARE) else None
            if ratio is not None:
                out.setdefault(scenario, {})[target] = round(ratio, 3)
    return out


def streams_text(results: dict[str, dict[str, Any]]) -> str | None:
    """CPU per stream over the bare proxy's, one line per gateway, one column per stream."""
    ratios = cpu_vs_bare(results)
    streams = [
        key
        for key, rows in results.items()
        if key in ratios and any(r["ttft_ms"] for r in rows.values())
    ]
    if not streams:
        return None
    targets = list(dict.fromkeys(t for key in streams for t in ratios[key]))
    width = max(len(key) for key in streams) + 2
    lines = [
        "CPU per stream over the bare proxy's:",
        f"  {'target':<30}" + "".join(f"{key:>{width}}" for key in streams),
    ]
    for target in targets:
        cells = "".join(f"{_num(ratios[key].get(target)):>{width}}" for key in streams)
        lines.append(f"  {target:<30}{cells}")
    return "\n".join(lines)


def paired(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Each gateway row against its baseline row (`<label> @<commit>`), per scenario: the
    change of CPU per request and of throughput, in percent."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for scenario, rows in results.items():
        for before_label, before in rows.items():
            label, at, _ = before_label.partition(" @")
            after = rows.get(label)
            if not at or after is None:
                continue
            out.setdefault(scenario, {})[label] = {
                "cpu_per_request_pct": _change(after, before, "cpu_ms_per_request"),
                "rps_pct": _change(after, before, "rps"),
            }
    return out


def _change(new: dict[str, Any], old: dict[str, Any], key: str) -> float | None:
    """`new[key]` over `old[key]`, as a change in percent."""
    if not new.get(key) or not old.get(key):
        return None
    return round((float(new[key]) / float(old[key]) - 1) * 100, 1)


def paired_text(results: dict[str, dict[str, Any]]) -> str | None:
    """`paired` as lines: `scenario  target  CPU/req +x%  rps +y%`."""
    pairs = paired(results)
    if not pairs:
        return None
    lines = ["Against the baseline (this revision / the baseline's, same run):"]
    for scenario, by in pairs.items():
        for target, change in by.items():
            cpu, rps = change["cpu_per_request_pct"], change["rps_pct"]
            lines.append(
                f"  {scenario:<18}{target:<22}CPU/req {_num(cpu, 1, signed=True):>6}%"
                f"  rps {_num(rps, 1, signed=True):>6}%"
            )
    return "\n".join(lines)


def goals_text(rows: list[dict[str, Any]], target: str) -> str:
    lines = [f"Goals of issue 4 ({target}, one core):"]
    for g in rows:
        status = {True: "met", False: "NOT MET", None: "not measured"}[g["met"]]
        value = "-" if g["measured"] is None else f"{g['measured']}{g['unit']}"
        lines.append(f"  [{status:^12}] {g['goal']}: {value} (goal {g['limit']})")
    return "\n".join(lines)


def database_text(results: dict[str, dict[str, Any]]) -> str | None:
    """What each PostgreSQL row asked of the database, per request: one line per row."""
    lines = [
        "The database per request (whole runs, warm-up included; PostgreSQL rows):",
        f"  {'scenario':<19}{'target':<28}{'rps':>6}{'DB/req':>8}{'stmt':>7}{'commit':>8}"
        f"{'batch r':>8}{'batch s':>8}{'sess':>6}{'ledger':>7}",
    ]
    shown = False
    for scenario, rows in results.items():
        for target, row in rows.items():
            db = row.get("database")
            if not db:
                continue
            shown = True
            sessions = db.get("sessions") or {}
            after = sessions.get("after") or {}
            lines.append(
                f"  {scenario:<19}{target:<28}{row['rps']:>6.0f}"
                f"{_num(row['db_cpu_ms_per_request'], 3):>8}"
                f"{_num(db.get('statements_per_request'), 3):>7}"
                f"{_num(db.get('commits_per_request'), 3):>8}"
                f"{_num((db.get('reserve') or {}).get('mean_batch'), 1):>8}"
                f"{_num((db.get('settle') or {}).get('mean_batch'), 1):>8}"
                f"{_num(sessions.get('max'), 0):>6}{_num(after.get('ledger'), 0):>7}"
            )
    if not shown:
        return None
    lines += [
        "stmt: the ledger's statements (reservations and settlements, every instance); "
        "commit: transactions committed",
        "(pg_stat_database); batch r/s: calls per reservation / settlement statement; "
        "sess: most sessions open on",
        "the database during the run; ledger: of those at its end, the ledger's hot path's "
        "(last query a reservation or settlement).",
    ]
    return "\n".join(lines)
