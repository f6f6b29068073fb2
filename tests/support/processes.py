"""Real gateway processes: `python -m ai_service serve --port P` as subprocesses on loopback.

Each process gets a clean environment (only the variables a test passes, plus
what Python needs), writes its stdout and stderr to a log file the test can
read afterwards, and can be stopped gracefully (SIGTERM), killed (SIGKILL) and
started again on the same port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

# Variables a gateway process inherits from the test runner; everything else is explicit.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_refuses(port: int) -> bool:
    """Whether a TCP connection to 127.0.0.1:port is refused (nothing listens)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


class GatewayProcess:
    """One `ai-service serve` process; `start()` waits until `/healthz` answers."""

    def __init__(
        self, env: Mapping[str, str], log_path: Path, port: int | None = None, name: str = "gw"
    ) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.port = port or free_port()
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def instance_id(self) -> str:
        return self.env["AI_SERVICE_INSTANCE_ID"]

    def start(self, timeout: float = 40.0, **env: str) -> GatewayProcess:
        """Start (or restart) the process, optionally with changed variables."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.env.update(env)
        full = {k: os.environ[k] for k in INHERITED if k in os.environ}
        full.update({"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}, **self.env)
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {self.starts} of {self.name} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ai_service", "serve", "--port", str(self.port)],
                env=full,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.logs()[-4000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} did not start in {timeout} s:\n{self.logs()[-4000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is settled or released."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        """The exit status (negative: killed by that signal). Raises on timeout."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time. Safe to call twice."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def logs(self) -> str:
        """Everything the process (all its starts) wrote to stdout and stderr."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def gateway_env(
    database_url: str,
    instance_id: str,
    upstream_base_url: str,
    upstream_key: str,
    **overrides: str,
) -> dict[str, str]:
    """The environment of a test gateway process: fast heartbeats, a short lease, short caches."""
    env = {
        "AI_SERVICE_DATABASE_URL": database_url,
        "AI_SERVICE_INSTANCE_ID": instance_id,
        "AI_SERVICE_HEARTBEAT_SECONDS": "0.5",
        "AI_SERVICE_INSTANCE_LEASE_SECONDS": "3",
        "AI_SERVICE_KEY_CACHE_SECONDS": "1",
        "AI_SERVICE_CATALOG_REFRESH_SECONDS": "1",
        "AI_SERVICE_LOG_LEVEL": "info",
        "AI_SERVICE_DATABASE_POOL_SIZE": "10",
        "AI_SERVICE_RETRY_BASE_DELAY": "0.01",
        "AI_SERVICE_RETRY_MAX_DELAY": "0.2",
        "AI_SERVICE_RETRY_BUDGET_SECONDS": "3",
        "AI_SERVICE_FIRST_BYTE_TIMEOUT": "2",
        "AI_SERVICE_STREAM_IDLE_TIMEOUT": "0.8",
        "OPENAI_API_KEY": upstream_key,
        "OPENAI_BASE_URL": upstream_base_url,
    }
    env.update(overrides)
    return env
