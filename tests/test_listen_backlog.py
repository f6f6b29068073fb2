"""`serve` listens with a queue of new connections as long as the kernel allows."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ai_service.fdlimit import DEFAULT_BACKLOG, SOMAXCONN, listen_backlog
from tests.support.processes import GatewayProcess


def queue_length(port: int) -> int:
    """The listening socket's backlog as the kernel reports it (`ss`: Send-Q)."""
    shown = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(shown[2])


def test_the_backlog_is_the_kernels_most_unless_configured() -> None:
    assert listen_backlog(100) == 100
    expected = max(DEFAULT_BACKLOG, int(SOMAXCONN.read_text()))
    assert listen_backlog(None) == expected


def test_serve_listens_with_that_backlog(tmp_path: Path) -> None:
    env = {"AI_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}"}
    gateway = GatewayProcess(env, tmp_path / "gw.log").start()
    try:
        assert queue_length(gateway.port) == min(listen_backlog(None), int(SOMAXCONN.read_text()))
    finally:
        gateway.stop()
    configured = GatewayProcess(env, tmp_path / "gw2.log").start(AI_SERVICE_LISTEN_BACKLOG="77")
    try:
        assert queue_length(configured.port) == 77
    finally:
        configured.stop()
