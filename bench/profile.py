"""Where ai-service's CPU goes: py-spy on the gateway under one bench scenario.

    python -m bench.run --profile [SCENARIO] [--profile-seconds 15]

Starts the fake upstream and ai-service on a fresh PostgreSQL database (as the
bench does), drives the scenario, samples the gateway with `py-spy record
--native` (installed into the venv when missing), and prints the CPU per
request broken down by library and by function, in milliseconds per request
(a function's share of the samples times the measured CPU per request).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import machine, procs, report, targets
from bench.scenarios import SCENARIOS, Scenario, Timing

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from bench.run import Bench, TargetFactory

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PACKAGES = (
    ("ai_service/", "ai_service"),
    ("sqlalchemy/", "sqlalchemy"),
    ("asyncpg/", "asyncpg"),
    ("aiosqlite/", "aiosqlite"),
    ("uvicorn/", "uvicorn"),
    ("starlette/", "starlette"),
    ("fastapi/", "fastapi"),
    ("aiohttp/", "aiohttp"),
    ("yarl/", "aiohttp"),
    ("multidict/", "aiohttp"),
    ("logging/", "logging"),
    ("asyncio/", "asyncio"),
    ("uvloop/", "uvloop"),
    ("pydantic", "pydantic"),
    ("orjson", "orjson"),
    ("anyio/", "anyio"),
)


def py_spy() -> str:
    """The py-spy executable, installed into this venv from PyPI when missing."""
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    found = shutil.which("py-spy")
    if found:
        return found
    print("py-spy is missing: installing it into the venv (pip install py-spy)")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], check=True)
    return str(local)


def package(file: str) -> str:
    for needle, name in PACKAGES:
        if needle in file:
            return name
    if file.endswith(".py"):
        return "python stdlib/other" if "/lib/python" in file else "other python"
    return "native"


def parse(lines: Iterable[str]) -> list[tuple[list[tuple[str, str]], int]]:
    """Collapsed stacks -> [(frames outermost first as (function, file)), samples)]."""
    stacks = []
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        frames = []
        for raw in stack.split(";"):
            match = FRAME.match(raw)
            if match:
                frames.append((match["func"], match["file"]))
            else:
                frames.append((raw, ""))
        stacks.append((frames, int(count)))
    return stacks


def _short(func: str, file: str) -> str:
    for needle in ("site-packages/", "/src/", "/lib/python3"):
        if needle in file:
            file = file.split(needle, 1)[1]
            break
    return f"{func} ({file})" if file else func


IDLE = frozenset({"epoll_wait", "epoll_pwait", "epoll_pwait2", "select", "poll", "nanosleep"})
GC = frozenset({"gc_collect_main", "gc_collect_with_callback", "gc_collect_generations"})


# a thread blocked on a lock (an idle worker of a thread pool): this, then libc only
LOCK_WAIT = "PyThread_acquire_lock_timed"


def is_idle(frames: list[tuple[str, str]]) -> bool:
    """A sample of a thread waiting: in the event loop's poll, or blocked on a lock."""
    if not frames:
        return False
    if frames[-1][0] in IDLE:
        return True
    names = [func for func, _ in frames]
    if LOCK_WAIT not in names:
        return False
    after = names[len(names) - names[::-1].index(LOCK_WAIT) :]
    return all(name.startswith("0x") for name in after)


def summarize(stacks: list[tuple[list[tuple[str, str]], int]], ms_per_request: float) -> str:
    """Shares of the busy samples (idle waits left out), in ms of CPU per request."""
    busy = [(frames, n) for frames, n in stacks if not is_idle(frames)]
    idle = sum(n for _, n in stacks) - sum(n for _, n in busy)
    total = sum(n for _, n in busy) or 1
    by_package: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, n in busy:
        python = [(f, file) for f, file in frames if file.endswith(".py")]
        leaf = python[-1] if python else (frames[-1] if frames else ("?", ""))
        if any(f in GC for f, _ in frames):
            by_package["garbage collector (gc)"] += n
            self_time["garbage collector (gc)"] += n
        else:
            by_package[package(leaf[1])] += n
            self_time[_short(*leaf)] += n
        for key in {_short(f, file) for f, file in python}:
            inclusive[key] += n
    everywhere = {key for key, n in inclusive.items() if n > 0.8 * total}  # main(), run(), ...
    ours = Counter(
        {k: n for k, n in inclusive.items() if "ai_service/" in k and k not in everywhere}
    )
    libs = Counter({k: n for k, n in inclusive.items() if k not in everywhere})

    def block(title: str, counts: Counter[str], limit: int) -> list[str]:
        lines = [title, f"  {'ms/req':>7} {'share':>6}  where"]
        for key, n in counts.most_common(limit):
            lines.append(f"  {n / total * ms_per_request:7.3f} {n / total * 100:5.1f}%  {key}")
        return [*lines, ""]

    out = [
        f"{total} busy samples ({idle} idle left out); "
        f"{ms_per_request:.3f} ms of gateway CPU per request",
        "",
    ]
    out += block("By package (of the innermost Python frame; gc apart):", by_package, 20)
    out += block("Inclusive, ai_service functions:", ours, 40)
    out += block("Inclusive, all functions:", libs, 60)
    out += block("Self (innermost Python frame; gc apart):", self_time, 40)
    return "\n".join(out)


def main(scenario_key: str, seconds: float, ref: str | None = None, which: str = "pg") -> int:
    from bench.run import bench

    scenario: Scenario = next(s for s in SCENARIOS if s.key == scenario_key)
    spy = py_spy()
    timing = Timing(warmup=2.0, duration=seconds + 4.0)
    with bench(ref) as (b, commit):
        info = machine.describe(b.server_core, b.load_core, ref, commit)
        start: TargetFactory = b.gateway("pg", report.PG)
        if which == "bare":

            def start() -> AbstractContextManager[targets.Target]:
                return targets.bare_proxy(b.upstream, b.server_core, b.tmp)

        with start() as target:
            result = _drive(b, target, scenario, timing, spy, seconds)
    raw = result.pop("stacks")
    row = report.derive(result, None)
    ms = row["cpu_ms_per_request"] or 0.0
    dirty = " with uncommitted changes" if info["uncommitted_changes"] else ""
    text = (
        f"py-spy profile of {target.name} under {scenario.key} ({scenario.title}) "
        f"at {info['short_commit']}{dirty}\n"
        f"{row['rps']:.0f} rps while sampled, {row['failures']} failed\n\n"
        + summarize(parse(raw.splitlines()), ms)
    )
    print(text)
    name = machine.result_name(info, False).removesuffix(".json")
    suffix = "-bare" if which == "bare" else ""
    path = procs.ROOT / "bench" / "results" / f"profile-{name}-{scenario.key}{suffix}.txt"
    path.write_text(text + "\n")
    stacks = Path(tempfile.gettempdir()) / f"ai-bench-{path.stem}.stacks.txt"
    stacks.write_text(raw)
    print(f"\nsaved {path.relative_to(procs.ROOT)}; collapsed stacks (for flamegraphs): {stacks}")
    return 0


def _drive(
    b: Bench,
    target: targets.Target,
    scenario: Scenario,
    timing: Timing,
    spy: str,
    seconds: float,
) -> dict[str, Any]:
    """Run the load in a thread and py-spy on the gateway meanwhile."""
    out = b.tmp / "stacks.txt"
    holder: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: holder.update(b.load(target, scenario, timing)))
    thread.start()
    time.sleep(timing.warmup + 1.0)
    assert target.pid is not None
    subprocess.run(
        [spy, "record", "--pid", str(target.pid), "--duration", str(int(seconds)),
         "--rate", "200", "--native", "--format", "raw", "--output", str(out)],
        check=True, capture_output=True, timeout=seconds + 60,
    )  # fmt: skip
    thread.join(timeout=timing.duration + 120)
    holder["stacks"] = out.read_text()
    return holder
