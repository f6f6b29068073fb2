"""A fake OpenAI whose behaviour per request is chosen by the request itself.

Under concurrent load a FIFO queue of behaviours cannot say which request gets
which fault. `DirectedOpenAI` reads a directive from the request's messages
instead: `[[plan:NAME]]` picks a named plan (a sequence of behaviours, one per
attempt: a retried request gets the next one, the last one repeats) and
`n=NONCE` names the logical request, so retries of one request advance its
plan. A request without a directive takes the fake's queue or default answer.

    fake = DirectedOpenAI(KEY, plans={"burst": (ErrorReply(500), ErrorReply(503), Answer())})
    body = {"messages": [{"role": "user", "content": directive("burst", nonce)}], ...}

`assigned` lists every request with the behaviour it got, so tests can count
the upstream answers that were completed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from tests.fakes.behaviours import Answer, Behaviour, Hang
from tests.fakes.openai_flavours import FakeOpenAI
from tests.fakes.records import RecordedRequest

PLAN = re.compile(r"\[\[plan:([A-Za-z0-9_.-]+)\]\]")
NONCE = re.compile(r"\bn=([A-Za-z0-9]+)\b")


def new_nonce() -> str:
    return uuid.uuid4().hex[:16]


def directive(plan: str, nonce: str, extra: str = "") -> str:
    """The message text that asks the fake for `plan`, tagged with `nonce`."""
    return f"[[plan:{plan}]] n={nonce} {extra}".rstrip()


def nonce_of(body: Any) -> str | None:
    text = _text(body)
    found = NONCE.search(text)
    return found.group(1) if found else None


def _text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    parts = [m.get("content") for m in messages if isinstance(m, dict)]
    return " ".join(p for p in parts if isinstance(p, str))


def final(behaviour: Behaviour) -> Behaviour:
    """What a behaviour ends as (a `Hang` goes on with its `then`)."""
    while isinstance(behaviour, Hang):
        behaviour = behaviour.then or Answer()
    return behaviour


class DirectedOpenAI(FakeOpenAI):
    """`FakeOpenAI` with per-request plans chosen by a directive in the messages."""

    def __init__(
        self, api_key: str, plans: Mapping[str, Sequence[Behaviour]] | None = None, **kw: Any
    ) -> None:
        super().__init__(api_key, **kw)
        self.plans: dict[str, tuple[Behaviour, ...]] = {
            k: tuple(v) for k, v in (plans or {}).items()
        }
        self.attempts: dict[str, int] = {}
        self.assigned: list[tuple[RecordedRequest, Behaviour]] = []
        self._chosen: tuple[Any, Behaviour] | None = None

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.attempts.clear()
            self.assigned.clear()

    def _pick(self, body: Any) -> Behaviour | None:
        text = _text(body)
        plan, nonce = PLAN.search(text), NONCE.search(text)
        if plan is None:
            return None
        steps = self.plans[plan.group(1)]
        key = nonce.group(1) if nonce else plan.group(1)
        with self._lock:
            attempt = self.attempts.get(key, 0)
            self.attempts[key] = attempt + 1
        return steps[min(attempt, len(steps) - 1)]

    # FakeServer._handle calls validate() and then _next() with no await between them,
    # so the behaviour picked here is the one _next() hands out for the same request.
    def validate(self, body: Any, headers: dict[str, str]) -> Any:
        problem = super().validate(body, headers)
        if problem is None:
            chosen = self._pick(body)
            self._chosen = (body, chosen) if chosen is not None else None
        return problem

    def _next(self) -> Behaviour:
        chosen, self._chosen = self._chosen, None
        behaviour = chosen[1] if chosen is not None else super()._next()
        with self._lock:
            record = self._records[-1]
            if chosen is not None:
                assert record.body is chosen[0], "directive picked for another request"
            self.assigned.append((record, behaviour))
        return behaviour

    def completed_answers(self) -> list[RecordedRequest]:
        """Requests the fake answered in full with a successful answer."""
        with self._lock:
            assigned = list(self.assigned)
        return [
            record
            for record, behaviour in assigned
            if isinstance(final(behaviour), Answer) and record.completed and record.status == 200
        ]
