"""The baseline: a bare pass-through proxy, aiohttp server + one shared aiohttp ClientSession.

It forwards the body and the `Content-Type`/`Authorization` headers to the same
path on the upstream, and relays the answer: read whole, or streamed piece by
piece for `text/event-stream`. Nothing else: no auth, no parsing, no database.

    python -m bench.bare_proxy --port 9002 --upstream http://127.0.0.1:9001
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import aiohttp
import uvloop
from aiohttp import web

FORWARDED = ("Content-Type", "Authorization")


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    key: web.AppKey[aiohttp.ClientSession] = web.AppKey("client", aiohttp.ClientSession)

    async def client_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=256)
        app[key] = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        yield
        await app[key].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {h: request.headers[h] for h in FORWARDED if h in request.headers}
        async with app[key].post(upstream + request.path, data=body, headers=headers) as resp:
            if resp.content_type != "text/event-stream":
                payload = await resp.read()
                return web.Response(
                    status=resp.status, body=payload, content_type=resp.content_type
                )
            out = web.StreamResponse(status=resp.status)
            out.content_type = "text/event-stream"
            await out.prepare(request)
            async for piece in resp.content.iter_any():
                await out.write(piece)
            await out.write_eof()
            return out

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.cleanup_ctx.append(client_ctx)
    app.router.add_get("/healthz", health)
    app.router.add_post("/{tail:.*}", forward)
    return app


async def serve(port: int, upstream: str) -> None:
    runner = web.AppRunner(make_app(upstream), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    assert args.upstream.startswith("http://127.0.0.1:"), "loopback only"
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.port, args.upstream.rstrip("/")))


if __name__ == "__main__":
    main()
