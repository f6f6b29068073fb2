"""Bounded concurrent load against gateway processes, recording what each client saw.

A `Job` is one logical client request (tagged with a nonce, see `directed.py`);
`run_jobs` sends the jobs with at most `concurrency` in flight and returns an
`Outcome` per job: HTTP status, whether the answer was complete (a JSON
completion, or an SSE stream ending in `[DONE]` without an error event), the
in-stream error event, and whether the client hung up on purpose. Every wait
is bounded: per request by `request_timeout`, overall by `deadline`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

CHAT = "/ai/openai/chat/completions"


@dataclass
class Job:
    nonce: str
    plan: str
    user: str
    key: str
    body: dict[str, Any]
    target: Callable[[], str]  # the gateway's base URL at send time
    disconnect_after: int | None = None  # close the stream after this many data events
    idempotency_key: str | None = None
    repeat: bool = False  # send again (same Idempotency-Key) once the first answer is in

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


@dataclass
class Outcome:
    job: Job
    status: int | None = None
    complete: bool = False
    error: dict[str, Any] | None = None  # the OpenAI error body, or the SSE error event
    data_events: int = 0
    disconnected: bool = False
    replayed: bool = False
    transport_error: str | None = None
    started: float = 0.0
    finished: float = 0.0
    base_url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""  # the body, or for a stream the text of its `content` deltas


async def send(session: aiohttp.ClientSession, job: Job, timeout: float) -> Outcome:
    """Send one job and read its answer (or hang up after `disconnect_after` events)."""
    base = job.target()
    out = Outcome(job, started=time.monotonic(), base_url=base)
    headers = {"X-API-Key": job.key}
    if job.idempotency_key:
        headers["Idempotency-Key"] = job.idempotency_key
    try:
        async with asyncio.timeout(timeout):
            async with session.post(base + CHAT, json=job.body, headers=headers) as resp:
                out.status = resp.status
                out.headers = dict(resp.headers)
                out.replayed = resp.headers.get("Idempotent-Replayed") == "true"
                if resp.content_type != "text/event-stream":
                    raw = await resp.read()
                    out.text = raw.decode(errors="replace")
                    data = orjson.loads(raw) if raw else None
                    if resp.status == 200:
                        out.complete = isinstance(data, dict) and bool(data.get("choices"))
                    elif isinstance(data, dict):
                        out.error = data
                else:
                    await _read_stream(resp, job, out)
    except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError) as exc:
        out.transport_error = f"{type(exc).__name__}: {exc}"
    out.finished = time.monotonic()
    return out


async def _read_stream(resp: aiohttp.ClientResponse, job: Job, out: Outcome) -> None:
    done = False
    async for raw in resp.content:
        line = raw.decode(errors="replace").rstrip("\r\n")
        if not line.startswith("data: "):
            continue
        payload = line[6:]
        if payload == "[DONE]":
            done = True
            break
        out.data_events += 1
        event = orjson.loads(payload)
        if isinstance(event, dict) and "error" in event:
            out.error = event
        elif isinstance(event, dict) and isinstance(event.get("content"), str):
            out.text += event["content"]
        if job.disconnect_after is not None and out.data_events >= job.disconnect_after:
            out.disconnected = True
            resp.close()  # hang up: the gateway must cancel the upstream and charge what ran
            return
    out.complete = done and out.error is None


async def run_jobs(
    jobs: Sequence[Job],
    concurrency: int,
    deadline: float,
    request_timeout: float = 20.0,
    pace: float = 0.0,
) -> list[Outcome]:
    """Send every job (at most `concurrency` at once, starting one each `pace` seconds).

    Returns the outcomes in job order (repeats of idempotent jobs appended at the end).
    Raises TimeoutError if the whole run takes longer than `deadline` seconds.
    """
    gate = asyncio.Semaphore(concurrency)
    repeats: list[Outcome] = []
    connector = aiohttp.TCPConnector(limit=concurrency * 2, force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None)
    ) as session:

        async def one(index: int, job: Job) -> Outcome:
            if pace:
                await asyncio.sleep(index * pace)
            async with gate:
                out = await send(session, job, request_timeout)
                if job.repeat and out.complete:
                    repeats.append(await send(session, job, request_timeout))
                return out

        async with asyncio.timeout(deadline):
            outcomes = await asyncio.gather(*(one(i, j) for i, j in enumerate(jobs)))
    return [*outcomes, *repeats]
