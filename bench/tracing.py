"""The `pg-otel` target: ai-service[pg] with tracing on, exporting to a sink that drops it all.

    python -m bench.run --targets bare,pg,pg-otel --scenarios json-c64
    python -m bench.tracing --cost 20000     # the spans' CPU alone, per request

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
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
        stats_url = origin + "/stats"
        with urllib.request.urlopen(stats_url, timeout=5) as answer:  # noqa: S310  # loopback
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


def span_cost(requests: int) -> float:
    """CPU microseconds per request of tracing alone, export thread included: a request span
    and an attempt span made, attributed, ended and encoded as OTLP protobuf (then dropped)
    by the gateway's own code (`ai_service.tracing.spans`), with the SDK's batching."""
    import asyncio
    import time
    from types import SimpleNamespace

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from ai_service.billing.ledger import Settlement
    from ai_service.providers.base import UpstreamRequest
    from ai_service.tracing.spans import Tracing

    class Encoded(SpanExporter):
        spans = 0

        def export(self, spans: Any) -> SpanExportResult:
            encode_spans(spans).SerializeToString()
            Encoded.spans += len(spans)
            return SpanExportResult.SUCCESS

    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(2 * requests)  # every span kept, to be encoded
    tracing = Tracing.start("bench", lambda _adapter: None, Encoded())
    # stand-ins of the gateway's objects, with what the spans read of them
    resolved: Any = SimpleNamespace(requested="gpt-5.4-mini", model="gpt-5.4-mini")
    target: Any = SimpleNamespace(provider="openai", resolved=resolved, label="openai:gpt-5.4-mini")
    plan: Any = SimpleNamespace(chain=[target], client_limit=None)
    principal: Any = SimpleNamespace(user_id=1, key_id=1)
    upstream = UpstreamRequest("http://127.0.0.1:9/v1/chat/completions", {"a": "b"}, b"")

    async def attempt(*_args: Any) -> dict[str, str]:
        return tracing.headers(upstream)

    async def one(n: int) -> None:
        trace = tracing.arrival({}).begin("chat", "openai", f"req_{n}", None, principal)
        adapter: Any = None
        await trace.attempts(attempt, plan)(adapter, target, None, 100)
        call: Any = SimpleNamespace(
            resolved=resolved, provider="openai", stream=False, attempts=[1]
        )
        settled = Settlement("ok", 200, cost=12_345, prompt_tokens=12, completion_tokens=30)
        trace.settled(call, settled)

    async def run() -> None:
        for n in range(requests):
            await one(n)

    started = time.process_time()
    asyncio.run(run())
    tracing.provider.shutdown()  # the last batches encoded
    assert Encoded.spans == 2 * requests, Encoded.spans
    return (time.process_time() - started) / requests * 1e6


def main() -> None:
    from aiohttp import web

    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument("--port", type=int, help="serve the sink on this port")
    parser.add_argument("--cost", type=int, metavar="N", help="measure N requests' spans")
    args = parser.parse_args()
    if args.cost:
        print(f"tracing: {span_cost(args.cost):.0f} us CPU per request (2 spans, encoded)")
        return
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
