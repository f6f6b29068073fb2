"""The chat body's light validation: what is refused before anything is reserved."""

from __future__ import annotations

import pytest

from ai_service.errors import InvalidRequestError
from ai_service.schemas import MAX_DEPTH, parse_body


def nested(levels: int) -> bytes:
    """A chat body whose objects and arrays nest `levels` deep in all (the body is level 1)."""
    arrays = levels - 5  # the body, `messages`, a message, its content and a part come first
    return (
        b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "extra": '
        + b"[" * arrays
        + b"]" * arrays
        + b"}]}]}"
    )


def test_a_body_may_nest_max_depth_levels() -> None:
    assert parse_body(nested(MAX_DEPTH))["model"] == "m"


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 253, 300])
def test_a_body_nested_deeper_is_refused(levels: int) -> None:
    with pytest.raises(InvalidRequestError, match="nested more than"):
        parse_body(nested(levels))
