"""The gateway's own work per stream event, without sockets: `python -m bench.relay`.

Each surface's upstream stream (the bench fake's bytes, one read per event,
as the socket delivers them 2 ms apart) is fed to a real aiohttp
`StreamReader` and read through the gateway's relay (`UpstreamStream.events`,
the surface's parser and writer, the tally) and, for the floor, by a bare
loop that reads each piece and joins it for sending. The difference per
stream is the gateway's own Python per event; the frameworks around it
(sockets, uvicorn, the event loop) cost the gateway and the bare proxy alike.
CPU time, best of `--runs`; run it on an idle core (`taskset -c 1`).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.base_protocol import BaseProtocol

from ai_service.providers.anthropic.passthrough import MessagesRelayParser
from ai_service.providers.base import ProviderConfig, StreamParser
from ai_service.providers.openai import OpenAIAdapter
from ai_service.providers.openai_compat import CompatStreamParser
from ai_service.providers.openai_responses import ResponsesStreamParser
from ai_service.services import respond
from ai_service.services.messages import MessagesFrames
from ai_service.services.responses import ResponsesFrames
from ai_service.upstream import Timeouts, UpstreamStream
from bench import fake_upstream, scenarios

ADAPTER = OpenAIAdapter(ProviderConfig("openai", "http://127.0.0.1:1/v1", "sk-bench", "K"))


def _call() -> Any:
    """The little of a `Call` a writer reads: the served model, the cost of a usage."""
    owners = SimpleNamespace(record=lambda _response_id, _user_id: None)
    state = SimpleNamespace(spawn=lambda work: work.close(), engine=None, owners=owners)
    resolved = SimpleNamespace(model=scenarios.MODEL)
    return SimpleNamespace(
        resolved=resolved,
        state=state,
        principal=SimpleNamespace(user_id=1),
        cost_fields=lambda _usage: (0.000123, "0.000123"),
    )


def _surfaces() -> dict[str, tuple[list[bytes], Callable[[], tuple[StreamParser, Any, Any]]]]:
    cfg = fake_upstream.Config()
    chat_body = {"model": scenarios.MODEL, "stream_options": {"include_usage": True}}

    def chat() -> tuple[StreamParser, Any, Any]:
        return CompatStreamParser(ADAPTER), respond.ChatFrames(_call(), True), None

    def responses() -> tuple[StreamParser, Any, Any]:
        parser = ResponsesStreamParser(ADAPTER)
        return parser, ResponsesFrames(_call()), _fill(parser)

    def messages() -> tuple[StreamParser, Any, Any]:
        parser = MessagesRelayParser()
        return parser, MessagesFrames(), _fill(parser)

    return {
        "chat": (fake_upstream.stream_events(chat_body, cfg, 1), chat),
        "responses": (
            fake_upstream.response_events({"model": scenarios.MODEL}, cfg, 1),
            responses,
        ),
        "messages": (
            fake_upstream.message_events({"model": scenarios.CLAUDE_MODEL}, cfg, 1),
            messages,
        ),
    }


def _fill(parser: Any) -> Any:
    """The tally's fill at settlement (none in revisions before `respond.fill_from`, run
    with `PYTHONPATH=<their src>` for a before/after)."""
    fill_from = getattr(respond, "fill_from", None)
    return None if fill_from is None else fill_from(parser)


def _reader(events: list[bytes]) -> aiohttp.StreamReader:
    loop = asyncio.get_running_loop()
    reader = aiohttp.StreamReader(BaseProtocol(loop), 2**20, loop=loop)
    for event in events:
        reader.feed_data(event)
    reader.feed_eof()
    return reader


class _Response:
    def __init__(self, content: aiohttp.StreamReader) -> None:
        self.content = content


async def _bare(events: list[bytes]) -> int:
    content = _reader(events)
    sent = 0
    while piece := await content.readany():
        sent += len(b"".join((piece,)))
    return sent


async def _gateway(events: list[bytes], make: Callable[[], tuple[StreamParser, Any, Any]]) -> int:
    parser, writer, fill = make()
    upstream = UpstreamStream(ADAPTER, _Response(_reader(events)), parser, Timeouts(10, 10, 10))  # type: ignore[arg-type]
    tally = respond.Tally(False, 0)
    sent = 0
    async for batch in upstream.events():
        frames = writer.write(batch, tally)
        if frames:
            tally.record(frames)
            sent += len(frames)
    if fill is not None:
        fill(tally)
    tally.record(writer.tail)
    return sent + len(writer.tail)


async def _time(work: Callable[[], Any], streams: int) -> float:
    start = time.process_time()
    for _ in range(streams):
        await work()
    return (time.process_time() - start) / streams * 1e6


async def main_async(streams: int, runs: int, only: str | None, mode: str | None) -> None:
    print(
        f"{'surface':<10} {'events':>6} {'bare us':>8} {'relay us':>9} {'own us':>7} {'/event':>7}"
    )
    for name, (events, make) in _surfaces().items():
        if only is not None and name != only:
            continue

        def bare(events: list[bytes] = events) -> Any:
            return _bare(events)

        def gateway(events: list[bytes] = events, make: Any = make) -> Any:
            return _gateway(events, make)

        floor = min([await _time(bare, streams) for _ in range(runs)]) if mode != "relay" else 0
        relay = min([await _time(gateway, streams) for _ in range(runs)]) if mode != "bare" else 0
        own = relay - floor
        print(
            f"{name:<10} {len(events):>6} {floor:>8.1f} {relay:>9.1f} {own:>7.1f} "
            f"{own / len(events):>7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--surface", choices=("chat", "responses", "messages"))
    parser.add_argument(
        "--mode",
        choices=("bare", "relay"),
        help="run one side only (for an instruction count: valgrind --tool=callgrind)",
    )
    args = parser.parse_args()
    asyncio.run(main_async(args.streams, args.runs, args.surface, args.mode))


if __name__ == "__main__":
    main()
