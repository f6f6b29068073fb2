"""Where and on what a bench run ran: commit, machine, versions, background load."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import procs, targets

PACKAGES = (
    "ai-service",
    "aiohttp",
    "uvicorn",
    "fastapi",
    "starlette",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "uvloop",
    "httptools",
    "orjson",
    "pydantic",
)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=procs.ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def background_busy(seconds: float = 1.0) -> dict[str, float]:
    """Percent busy of each CPU over `seconds`, before or after the run (others' load)."""
    before = procs.cpu_busy()
    time.sleep(seconds)
    after = procs.cpu_busy()
    return {str(c): round((after[c] - before[c]) / seconds * 100, 1) for c in after}


def describe(
    server_core: int | None,
    load_core: int | None,
    ref: str | None = None,
    ref_commit: str | None = None,
) -> dict[str, Any]:
    """Commit, machine and versions; with `ref`, the commit is that revision's."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    commit: str | None
    if ref_commit is not None:
        commit, dirty, code = ref_commit, False, f"git archive of {ref}"
    else:
        commit = _git("rev-parse", "HEAD")
        changed = _git("status", "--porcelain", "--untracked-files=all", "--", "src") or ""
        dirty = bool(changed)
        code = "copy of the working tree's src/" + (
            f", {len(changed.splitlines())} paths differing from the commit" if dirty else ""
        )
    return {
        "commit": commit,
        "short_commit": commit[:7] if commit else None,
        "uncommitted_changes": dirty,
        "code": code,
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "postgresql": targets.pg_version(),
        "postgresql_settings": targets.pg_settings(),
        "server_core": server_core,
        "load_core": load_core,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "background_load_before": background_busy(),
    }


def summary(info: dict[str, Any]) -> str:
    dirty = " (with uncommitted changes under src/)" if info["uncommitted_changes"] else ""
    pins = (
        f"server on CPU {info['server_core']}, load generator and upstream on CPU "
        f"{info['load_core']}"
        if info["server_core"] is not None
        else "no pinning"
    )
    return (
        f"ai-service bench at {info['short_commit']}{dirty}: "
        f"{info['nproc']} x {info['cpu_model']}, "
        f"Linux {info['kernel']}, Python {info['python']}, PostgreSQL {info['postgresql']}\n"
        f"{pins}; background load before the run: "
        + ", ".join(f"CPU {c} {p:.0f}%" for c, p in info["background_load_before"].items())
    )


def result_name(info: dict[str, Any], quick: bool) -> str:
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    return f"{date}-{info['short_commit'] or 'nocommit'}{'-quick' if quick else ''}.json"
