"""The `pg-otel` target: ai-service[pg] with tracing on, exporting to a sink that drops it all.

    python -m bench.run --targets bare,pg,pg-otel --scenarios json-c64

The gateway runs as the `pg` row does, with `AI_SERVICE_TRACING=true` and its
OTLP/HTTP exporter pointed at the sink: a small aiohttp server (this module's
`main`, on the load generator's core) that accepts `POST /v1/traces`, counts
the spans' bytes and discards them. Set against the `pg` row of the same run,
the row is what tracing costs per request: the spans, their batching and
their export. The sink's log holds what it received.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bench import procs, targets

if TYPE_CHECKING:
    from bench.run import Bench, TargetFactory

LABEL = "ai-service[pg] tracing"


@contextlib.contextmanager
def sink(core: int | None, logs: Path) -> Iterator[str]:
    """A trace sink on `core`; yields its origin, logs what it received at the end."""
    port = procs.free_port()
    log = logs / "trace-sink.log"
    command = targets.python_module("bench.tracing", "--port", str(port))
    proc = procs.spawn(command, core=core, log=log)
    origin = f"http://127.0.0.1:{port}"
    try:
        procs.wait_http(origin + "/healthz", proc, log=log)
        yield origin
        with urllib.request.urlopen(origin + "/stats", timeout=5) as answer:  # noqa: S310  # loopback
            stats = answer.read().decode()
        with log.open("a") as out:
            out.write(f"received: {stats}\n")
    finally:
        procs.stop(proc)


def target(b: Bench) -> TargetFactory:
    """The `pg` gateway with tracing on, exporting to a sink started with it."""

    @contextlib.contextmanager
    def start() -> Iterator[targets.Target]:
        with sink(b.load_core, b.tmp) as origin, targets.database("pg", b.tmp) as (url, name):
            key = targets.prepare(url, b.upstream, b.tmp, b.src)
            env = {"AI_SERVICE_TRACING": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": origin}
            with targets.ai_service(
                LABEL, url, name, key, b.upstream, b.server_core, b.tmp, b.src, env=env
            ) as gateway:
                yield gateway

    return start


def main() -> None:
    from aiohttp import web

    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    received = {"exports": 0, "bytes": 0}

    async def traces(request: web.Request) -> web.Response:
        received["exports"] += 1
        received["bytes"] += len(await request.read())
        return web.Response(content_type="application/x-protobuf")

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def stats(_request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(received))

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
