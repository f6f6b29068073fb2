"""How one SSE message of an upstream stream reaches its parser (`upstream.parse_message`)."""

from __future__ import annotations

from ai_service.providers.base import StreamEvent
from ai_service.upstream import parse_message


class Recorder:
    """A parser that records what it is fed."""

    done = False

    def __init__(self) -> None:
        self.fed: list[tuple[str | None, str, bytes | None]] = []

    def feed(self, event: str | None, data: str, frame: bytes | None = None) -> list[StreamEvent]:
        self.fed.append((event, data, frame))
        return [StreamEvent(None)]


def fed(message: bytes) -> tuple[str | None, str, bytes | None]:
    parser = Recorder()
    parse_message(parser, message)
    (call,) = parser.fed
    return call


def test_a_data_line_comes_with_its_bytes() -> None:
    assert fed(b'data: {"a":"\xc3\xa9"}') == (None, '{"a":"\u00e9"}', b'data: {"a":"\xc3\xa9"}\n\n')


def test_a_named_event_comes_with_its_bytes() -> None:
    message = b'event: message_start\ndata: {"type":"message_start"}'
    assert fed(message) == ("message_start", '{"type":"message_start"}', message + b"\n\n")


def test_other_shapes_are_parsed_by_line_and_come_without_bytes() -> None:
    # several data lines, comments, ids, a name after the data, no space after the colon
    assert fed(b"data: a\ndata: b") == (None, "a\nb", None)
    assert fed(b": keep-alive\nevent: ping\ndata: {}") == ("ping", "{}", None)
    assert fed(b"id: 7\ndata: x") == (None, "x", None)
    assert fed(b"data: x\nevent: late") == ("late", "x", None)
    assert fed(b"event:tight\ndata:{}") == ("tight", "{}", None)
    assert fed(b"event: two\ndata: a\ndata: b") == ("two", "a\nb", None)


def test_a_message_without_data_is_not_fed() -> None:
    parser = Recorder()
    assert parse_message(parser, b": only a comment") == []
    assert parse_message(parser, b"event: ping") == []
    assert parser.fed == []
