"""Processes of a bench run: free ports, pinning, readiness, CPU time from /proc.

CPU time of a server is the sum of utime + stime of its process and every
descendant (uvicorn's workers included), read from `/proc/<pid>/stat`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cores() -> tuple[int | None, int | None]:
    """(server core, load core): two distinct CPUs we may run on, or (None, None)."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, cpu seconds) of one process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: split after the last ')'
    fields = raw[raw.rindex(b")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime = int(fields[11]), int(fields[12])
    return ppid, (utime + stime) / CLK_TCK


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def tree_pids(root: int) -> list[int]:
    """`root` and all its live descendants."""
    parents: dict[int, int] = {}
    for pid in _all_pids():
        info = _stat(pid)
        if info is not None:
            parents[pid] = info[0]
    found = [root]
    frontier = {root}
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        found.extend(children)
        frontier = set(children)
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of a process tree, live processes only."""
    total = 0.0
    for pid in tree_pids(root):
        info = _stat(pid)
        if info is not None:
            total += info[1]
    return total


def pg_backends(database: str) -> list[int]:
    """PostgreSQL backend processes serving `database` (found by their process title)."""
    found = []
    needle = f" {database} ".encode()
    for pid in _all_pids():
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres:") and needle in title:
            found.append(pid)
    return found


def pg_cpu(database: str) -> float:
    """CPU seconds of the live PostgreSQL backends of `database`."""
    total = 0.0
    for pid in pg_backends(database):
        info = _stat(pid)
        if info is not None:
            total += info[1]
    return total


def pin(pids: Iterable[int], core: int | None) -> None:
    if core is None:
        return
    for pid in pids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {core})


def cpu_busy() -> dict[int, float]:
    """Busy seconds of each CPU since boot, from /proc/stat (all but idle and iowait)."""
    busy: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(v) for v in values]
        busy[int(name[3:])] = (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK
    return busy


def spawn(
    args: Sequence[str],
    *,
    core: int | None,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server process in its own session, pinned to `core`."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]
    pin([proc.pid], core)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_http(
    url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0, log: Path | None = None
) -> None:
    """Wait until GET `url` (loopback only) answers 200. Raises RuntimeError."""
    assert url.startswith("http://127.0.0.1:")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with code {proc.returncode}\n{tail(log)}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as resp,  # noqa: S310
        ):
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url}: not ready after {timeout:g} s\n{tail(log)}")


def post_json(url: str, body: bytes) -> bytes:
    assert url.startswith("http://127.0.0.1:")
    req = urllib.request.Request(  # noqa: S310
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
        data: bytes = resp.read()
        return data


def get_text(url: str) -> str:
    """GET `url` (loopback only); the body as text. Raises OSError."""
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310
        data: bytes = resp.read()
    return data.decode()
