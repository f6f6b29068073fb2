"""Matching what clients saw under load with what the books and the upstream say."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from tests.support.directed import DirectedOpenAI
from tests.support.invariants import Books, Row
from tests.support.load import Outcome
from tests.support.processes import GatewayProcess


def start_all(*procs: GatewayProcess) -> None:
    """Start processes side by side (each takes a couple of seconds to boot)."""
    with ThreadPoolExecutor(len(procs)) as pool:
        for future in [pool.submit(p.start) for p in procs]:
            future.result()


async def ready(client: httpx.AsyncClient, proc: GatewayProcess) -> int:
    return (await client.get(proc.url + "/readyz")).status_code


async def wait_ready(
    client: httpx.AsyncClient, procs: Sequence[GatewayProcess], timeout: float
) -> None:
    """Wait until every process's `/readyz` says its database answers."""
    deadline = time.monotonic() + timeout
    while [await ready(client, p) for p in procs] != [200] * len(procs):
        assert time.monotonic() < deadline, "the gateways did not become ready again"
        await asyncio.sleep(0.1)


@dataclass
class Tally:
    complete: int = 0
    replays: int = 0
    refused_402: int = 0
    failed: int = 0
    sse_errors: int = 0
    disconnected: int = 0
    transport_errors: int = 0
    ok_rows: int = 0
    upstream_answers: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in vars(self).items())


def mismatches(
    outcomes: Sequence[Outcome], books: Books, upstream: DirectedOpenAI, tally: Tally
) -> list[str]:
    """Every outcome whose log row disagrees with what its client saw, in words.

    complete answer -> one `ok` row, charged once; error status or SSE error event
    -> `error` rows at cost 0; hung up mid-stream -> a `cancelled` row (or `ok` if
    the answer was finished first), charged what was generated; replay -> no new row.
    """
    rows = books.rows_by_nonce()
    problems: list[str] = []
    for out in outcomes:
        found: list[Row] = rows.get(out.job.nonce, [])
        tag = f"{out.job.plan}/{'stream' if out.job.stream else 'json'} n={out.job.nonce}"
        if out.replayed:
            tally.replays += 1
            if not out.complete:
                problems.append(f"{tag}: replay was not a complete answer")
            continue
        if out.transport_error is not None and not out.disconnected:
            tally.transport_errors += 1
            continue
        if out.complete:
            tally.complete += 1
            ok = [r for r in found if r.status == "ok"]
            if len(ok) != 1 or ok[0].cost <= 0:
                problems.append(f"{tag}: complete answer but rows {[r.status for r in found]}")
            elif books.charges(ok[0].request_id) != [ok[0].cost - ok[0].uncollected]:
                problems.append(f"{tag}: not charged exactly once")
        elif out.disconnected:
            tally.disconnected += 1
            if [r.status for r in found] not in (["cancelled"], ["ok"]):
                problems.append(f"{tag}: hung up but rows {[r.status for r in found]}")
            elif found[0].cost <= 0:
                problems.append(f"{tag}: hung up after {out.data_events} events but not charged")
        elif out.status == 200 and out.error is not None:
            tally.sse_errors += 1
            if [(r.status, r.cost) for r in found] != [("error", 0)]:
                problems.append(f"{tag}: stream error event but rows {found}")
        elif out.status is not None and out.status >= 400:
            if out.status == 402:
                tally.refused_402 += 1
            else:
                tally.failed += 1
            if not out.error or set(out.error.get("error", {})) != {
                "message",
                "type",
                "param",
                "code",
            }:
                problems.append(f"{tag}: {out.status} without an OpenAI error body: {out.text}")
            if any(r.status != "error" or r.cost != 0 for r in found):
                problems.append(
                    f"{tag}: {out.status} but rows {[(r.status, r.cost) for r in found]}"
                )
        else:
            problems.append(f"{tag}: unexpected outcome {out}")
        if len([r for r in found if r.status == "ok"]) > 1:
            problems.append(f"{tag}: served twice")
    tally.ok_rows = len(books.rows("r.status = 'ok'"))
    tally.upstream_answers = len(upstream.completed_answers())
    return problems


def statuses(outcomes: Sequence[Outcome]) -> Counter[object]:
    return Counter(o.status if o.transport_error is None else "transport" for o in outcomes)
