"""A PostgreSQL cluster of a test's own: initdb in a temporary directory, a free port.

The machine's PostgreSQL server is never touched. `crash()` kills the server
with SIGKILL (no shutdown checkpoint, nothing flushed from PostgreSQL's own
buffers: what a crash of the server leaves), and `start()` starts it again on
the same data directory and port, so PostgreSQL runs its crash recovery from
the WAL.

    cluster = PgCluster.create()          # None where PostgreSQL is not installed
    url = cluster.create_database()       # migrated: postgresql://...
    cluster.crash(); cluster.start()
    cluster.destroy()

initdb refuses to run as root: as root the cluster's processes run as the
`postgres` user (the one the Debian package creates), in a directory it owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from ai_service.storage.db import upgrade
from tests.support.processes import free_port

SERVER_USER = "postgres"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian's layout, or PATH)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (the cluster's backends and helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class PgCluster:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:`port`."""

    def __init__(self, bin_dir: Path, root: Path, user: str | None) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.log_path = root / "postgres.log"
        self.user = user  # run the server as this user (when the tests run as root)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.crashes = 0
        self.started = 0.0
        self.start_seconds = 0.0  # how long the last start took (after a crash: the recovery)

    @classmethod
    def create(cls) -> PgCluster | None:
        """initdb a new cluster and start it; None where PostgreSQL is not installed."""
        bin_dir = binaries()
        if bin_dir is None:
            return None
        user = None
        root = Path(tempfile.mkdtemp(prefix="ai-service-pg-"))
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                shutil.rmtree(root)
                return None
            user = SERVER_USER
            os.chown(root, account.pw_uid, account.pw_gid)
        cluster = cls(bin_dir, root, user)
        cluster._run(
            [
                str(bin_dir / "initdb"),
                "--pgdata",
                str(cluster.data),
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ]
        )
        return cluster.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_server(self) -> dict[str, Any]:
        return {"user": self.user, "group": self.user} if self.user else {}

    def _run(self, args: list[str]) -> None:
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.root,
            **self._as_server(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{result.stdout}\n{result.stderr}")

    def start(self, timeout: float = 60.0) -> PgCluster:
        """Start the server (after a crash: crash recovery) and wait until it accepts queries."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": "100",
            "shared_buffers": "32MB",
            # the server's durability settings stay PostgreSQL's defaults: fsync on,
            # synchronous_commit on, wal_writer_delay 200ms
        }
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        self.started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.root,
                start_new_session=True,
                **self._as_server(),
            )
        deadline = time.monotonic() + timeout
        while not self._accepts():
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.logs()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start in {timeout} s:\n{self.logs()[-4000:]}")
            time.sleep(0.05)
        self.start_seconds = time.monotonic() - self.started
        return self

    def _accepts(self) -> bool:
        async def probe() -> bool:
            try:
                conn = await asyncpg.connect(self.url, timeout=1)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                return False
            try:
                await conn.fetchval("SELECT 1")
            finally:
                await conn.close()
            return True

        return asyncio.run(probe())

    def crash(self, whole_server: bool = True) -> None:
        """Kill the server with SIGKILL; wait until every one of its processes is gone.

        `whole_server`: every process dies at the same instant (frozen with SIGSTOP,
        then killed), as in a crash of the machine: no process can say anything to
        its clients, their connections are just cut. Otherwise only the postmaster
        is killed; its backends notice and exit on their own, each first sending
        its client a FATAL error ("terminating connection due to unexpected
        postmaster exit") where it is waiting for one.
        """
        assert self.proc is not None and self.proc.poll() is None, "not running"
        postmaster = self.proc.pid
        if whole_server:
            os.kill(postmaster, signal.SIGSTOP)  # it starts no new process from now on
            children = _children(postmaster)
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            for pid in [postmaster, *children]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        else:
            children = _children(postmaster)
            self.proc.kill()
        self.proc.wait(10)
        deadline = time.monotonic() + 20
        while any(_running(pid) for pid in children):
            assert time.monotonic() < deadline, "the cluster's processes outlived the postmaster"
            time.sleep(0.01)
        self.crashes += 1

    def stop(self) -> None:
        """A fast shutdown (SIGINT), then SIGKILL if it takes too long. Safe to call twice."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.crash()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def create_database(self, prefix: str = "ai_service_crash") -> str:
        """A new database on this cluster, migrated; its plain URL.

        Starts the cluster first if it is down (a test that failed mid-crash).
        """
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"

        async def create() -> None:
            conn = await asyncpg.connect(self.url)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        url = f"postgresql://postgres@127.0.0.1:{self.port}/{name}"
        upgrade(url)
        asyncio.run(self.checkpoint())
        return url

    async def checkpoint(self) -> None:
        """A checkpoint now: crash recovery replays only the WAL written after it."""
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()
