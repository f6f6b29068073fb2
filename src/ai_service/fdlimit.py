"""The process's open-file limit, raised to its hard limit at start.

Every open stream holds two sockets (the client's and the upstream's); the
soft limit many systems start a process with (1,024) would cap a process at
about 500 streams. The hard limit is what the system allows without
privileges; `raise_open_files()` moves the soft limit up to it, once per
process (each worker of `serve --workers N` runs its own lifespan).
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

log = logging.getLogger("ai_service")

# what "unlimited" is taken to mean: Linux's default ceiling (fs.nr_open)
UNLIMITED = 1_048_576


def raise_open_files() -> int:
    """Raise the soft open-file limit to the hard one (logged); returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning(
                "could not raise the open-file limit",
                extra={"soft": soft, "hard": hard, "error": str(exc)},
            )
            return soft
        log.info("open-file limit raised", extra={"soft": target, "was": soft, "hard": hard})
        return target
    log.info("open-file limit", extra={"soft": soft, "hard": hard})
    return soft


# where Linux says how long a listening socket's queue of new connections may be
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")
DEFAULT_BACKLOG = 2048


def listen_backlog(configured: int | None) -> int:
    """The queue of connections not yet accepted: `configured`, or the most the kernel
    allows (`net.core.somaxconn`, which also caps a larger number); uvicorn's own default
    (2,048) where the kernel does not say."""
    if configured is not None:
        return configured
    try:
        return max(DEFAULT_BACKLOG, int(SOMAXCONN.read_text().strip()))
    except (OSError, ValueError):
        return DEFAULT_BACKLOG
