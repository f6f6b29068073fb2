"""The circuit breaker of one credential: a small state machine.

    closed ──(`threshold` failures in a row: 5xx, timeouts, connection errors)──> open
    open ──(`cooldown` seconds later, the next request is the trial)──> half_open
    half_open ──(the trial succeeds)──> closed
    half_open ──(the trial fails)──> open (for another `cooldown`)

While half open only the one trial is let through; a trial that never reports
(its client left) frees the way for another after `cooldown`.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# the gauge value of each state (ai_service_upstream_breaker_state)
STATE_VALUES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


class Breaker:
    __slots__ = ("changed", "cooldown", "failures", "since", "state", "threshold", "trial_at")

    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.state = State.CLOSED
        self.failures = 0
        self.since = 0.0  # when it last opened (wall clock: shared across instances)
        self.trial_at: float | None = None
        self.changed = False  # a transition not yet shared

    def allows(self, now: float) -> bool:
        """Whether a request may go through now (without taking the trial)."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.OPEN:
            return now >= self.since + self.cooldown
        return self.trial_at is None or now >= self.trial_at + self.cooldown

    def reopens_in(self, now: float) -> float:
        return max(0.0, self.since + self.cooldown - now)

    def take(self, now: float) -> None:
        """A request goes through: an open breaker whose cooldown is over makes it the trial."""
        if self.state is State.OPEN:
            self._move(State.HALF_OPEN)
        if self.state is State.HALF_OPEN:
            self.trial_at = now

    def success(self) -> None:
        self.failures = 0
        if self.state is not State.CLOSED:
            self.trial_at = None
            self._move(State.CLOSED)

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.state is State.HALF_OPEN or (
            self.state is State.CLOSED and self.failures >= self.threshold
        ):
            self.since = now
            self.trial_at = None
            self._move(State.OPEN)

    def adopt(self, state: State, since: float) -> None:
        """Take another instance's newer state."""
        self.state, self.since, self.trial_at = state, since, None
        if state is State.CLOSED:
            self.failures = 0

    def _move(self, state: State) -> None:
        self.state = state
        self.changed = True
