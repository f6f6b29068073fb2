"""The upstream faults the suite injects, as named plans of `DirectedOpenAI`, and load mixes.

A plan is one behaviour per upstream attempt (the last one repeats), so
`burst-recovers` fails twice and then answers, which the gateway must see as
one request, retried, charged once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tests.fakes.behaviours import (
    Answer,
    Behaviour,
    ErrorReply,
    Hang,
    Malformed,
    ResetConnection,
    WrongContentType,
)
from tests.support.directed import directive, new_nonce
from tests.support.invariants import TEST_MODEL
from tests.support.load import Job

# The upstream key every fake and gateway process of this package uses: a sentinel
# string that must never show up in a response, a log line, a stored payload or a metric.
UPSTREAM_SENTINEL = "sk-upstream-SENTINEL-7f3a9c1e5b2d4a6f8e0c"

TEN_WORDS = " ".join(f"drip{i}" for i in range(10))
SIX_WORDS = "one two three four five six"
LONG_TEXT = " ".join(f"word{i}" for i in range(60))
MAX_TOKENS = 64

PLANS: dict[str, tuple[Behaviour, ...]] = {
    "ok": (Answer(),),
    "burst-recovers": (ErrorReply(500), ErrorReply(503), Answer()),
    "burst-exhausted": (ErrorReply(500),),
    "overloaded-529": (ErrorReply(529),),
    "rate-limited-recovers": (ErrorReply(429, retry_after=1), Answer()),
    "rate-limited-briefly": (ErrorReply(429, retry_after=0.1), Answer()),
    "rate-limited-exhausted": (ErrorReply(429, retry_after=0.2),),
    "rate-limited-too-long": (ErrorReply(429, retry_after=30),),
    "reset-recovers": (ResetConnection(), Answer()),
    "reset-always": (ResetConnection(),),
    "hang": (Hang(6),),
    "hang-briefly": (Hang(0.3, Answer()),),
    "slow-drip": (Answer(text=TEN_WORDS, chunk_delay=0.3),),
    "drip": (Answer(text=SIX_WORDS, chunk_delay=0.05),),
    "long-drip": (Answer(text=LONG_TEXT, chunk_delay=0.05),),
    "stall": (Answer(text="one two three four", chunk_delay=3),),
    "stall-briefly": (Answer(text="one two three four", chunk_delay=1.5),),
    "cut": (Answer(text=SIX_WORDS, cut_after=2),),
    "error-event": (Answer(text=SIX_WORDS, error_after=2),),
    "malformed": (Malformed(),),
    "malformed-stream": (Malformed(after_chunks=2),),
    "wrong-content-type": (WrongContentType(),),
    "upstream-400": (
        ErrorReply(400, "Invalid 'temperature': must be at most 2.", param="temperature"),
    ),
}


def chat_body(plan: str, nonce: str, stream: bool, **extra: object) -> dict[str, object]:
    return {
        "model": TEST_MODEL,
        "max_tokens": MAX_TOKENS,
        "stream": stream,
        "messages": [{"role": "user", "content": directive(plan, nonce)}],
        **extra,
    }


@dataclass(frozen=True)
class Kind:
    """One kind of request in a load mix."""

    plan: str
    weight: int
    stream: bool | None = None  # None: either, at random
    disconnect_after: int | None = None


# Mixed traffic: mostly good answers, retried faults, terminal faults, slow streams,
# and clients that hang up mid-stream.
LOAD_MIX: tuple[Kind, ...] = (
    Kind("ok", 40),
    Kind("burst-recovers", 6),
    Kind("rate-limited-briefly", 4),
    Kind("reset-recovers", 4),
    Kind("hang-briefly", 3),
    Kind("burst-exhausted", 3),
    Kind("upstream-400", 2),
    Kind("malformed", 2),
    Kind("wrong-content-type", 2),
    Kind("cut", 4, stream=True),
    Kind("stall-briefly", 3, stream=True),
    Kind("drip", 6, stream=True),
    Kind("long-drip", 6, stream=True, disconnect_after=2),
)


def load_jobs(
    count: int,
    users: Sequence[tuple[str, str]],
    targets: Sequence[Callable[[], str]],
    seed: int,
    repeats: int = 0,
    mix: Sequence[Kind] = LOAD_MIX,
) -> list[Job]:
    """`count` jobs drawn from `mix` for `users` (name, key), alternating between `targets`.

    The first user is the rich one: its first `repeats` good requests carry an
    Idempotency-Key and are sent twice.
    """
    rng = random.Random(seed)
    jobs: list[Job] = []
    weights = [k.weight for k in mix]
    for i in range(count):
        kind = rng.choices(mix, weights)[0]
        name, key = users[i % len(users)]
        stream = kind.stream if kind.stream is not None else rng.random() < 0.5
        nonce = new_nonce()
        repeat = repeats > 0 and name == users[0][0] and kind.plan == "ok"
        if repeat:
            repeats -= 1
        jobs.append(
            Job(
                nonce=nonce,
                plan=kind.plan,
                user=name,
                key=key,
                body=chat_body(kind.plan, nonce, stream),
                target=targets[i % len(targets)],
                disconnect_after=kind.disconnect_after,
                idempotency_key=f"idem-{nonce}" if repeat else None,
                repeat=repeat,
            )
        )
    return jobs
