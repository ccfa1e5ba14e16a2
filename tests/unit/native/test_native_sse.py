"""SSE parser: WHATWG semantics (held to reference.parse_sse), chunking-invariance, buffer cap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_runtime import native
from agent_runtime.native import reference

_PARTS = [
    b"data: x", b"data:y", b"data", b"data:  two spaces", b"event: update", b"event:", b"id: 7", b"id",
    b"id: a\x00b", b"retry: 1500", b"retry: 15x", b"retry:", b": comment", b":", b"unknown: f",
    b"\n", b"\r", b"\r\n", b"\n\n", b" ", b"\xef\xbb\xbf", b"\xc3\xa9", b"\xc3", b"\xff", "日本".encode(),
]
streams = st.lists(st.sampled_from(_PARTS), max_size=60).map(b"".join)


def as_tuples(events: list[native.SseEvent]) -> list[tuple[str, str, str, int | None]]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


def feed_chunks(stream: bytes, cuts: list[int]) -> list[native.SseEvent]:
    parser = native.SseParser()
    events: list[native.SseEvent] = []
    last = 0
    for c in sorted(min(c, len(stream)) for c in cuts) + [len(stream)]:
        events += parser.feed(stream[last:c])
        last = c
    parser.finish()
    return events


@settings(max_examples=300, deadline=None)
@given(stream=streams, cuts=st.lists(st.integers(0, 400), max_size=12))
def test_any_chunking_gives_the_reference_events(stream: bytes, cuts: list[int]) -> None:
    expected = [(e.event, e.data, e.id, e.retry) for e in reference.parse_sse(stream)]
    assert as_tuples(feed_chunks(stream, [])) == expected
    assert as_tuples(feed_chunks(stream, cuts)) == expected


def test_byte_by_byte_equals_one_feed() -> None:
    stream = b"\xef\xbb\xbfdata: a\r\ndata: b\r\n\r\nevent: e\rid: 1\rdata: c\r\r: c\n\ndata\n\n"
    one = native.SseParser().feed(stream)
    parser = native.SseParser()
    split = [e for i in range(len(stream)) for e in parser.feed(stream[i : i + 1])]
    assert split == one
    assert as_tuples(one) == [("message", "a\nb", "", None), ("e", "c", "1", None), ("message", "", "1", None)]


def test_event_fields() -> None:
    parser = native.SseParser()
    (ev,) = parser.feed(b"retry: 2500\nid: 42\nevent: delta\ndata: {\"a\": 1}\n\n")
    assert (ev.event, ev.data, ev.id, ev.retry) == ("delta", '{"a": 1}', "42", 2500)
    assert ev == native.SseEvent('{"a": 1}', event="delta", id="42", retry=2500)
    assert parser.retry == 2500 and parser.last_event_id == "42"
    (ev2,) = parser.feed(b"data: next\n\n")
    assert (ev2.id, ev2.retry) == ("42", None)


def test_finish_discards_an_unterminated_event() -> None:
    parser = native.SseParser()
    assert parser.feed(b"data: complete\n\ndata: incomplete\n") != []
    assert parser.finish() is True
    with pytest.raises(native.ParserClosedError):
        parser.feed(b"\n")
    assert native.SseParser().finish() is False


def test_buffer_cap_raises_a_specific_error_and_closes_the_parser() -> None:
    parser = native.SseParser(max_buffer=64)
    assert parser.max_buffer == 64
    with pytest.raises(native.SseBufferOverflow, match="max_buffer=64"):
        parser.feed(b"data: " + b"x" * 100)
    with pytest.raises(native.ParserClosedError):
        parser.feed(b"\n\n")
    # Pending data of an undispatched event counts too, not just the partial line.
    parser = native.SseParser(max_buffer=64)
    with pytest.raises(native.SseBufferOverflow):
        for _ in range(20):
            parser.feed(b"data: 0123456789\n")
    # Complete events never accumulate.
    parser = native.SseParser(max_buffer=64)
    for _ in range(1000):
        assert len(parser.feed(b"data: 0123456789012345678901234567890123456789\n\n")) == 1
    assert issubclass(native.SseBufferOverflow, ValueError)


def test_feed_requires_bytes() -> None:
    with pytest.raises(TypeError):
        native.SseParser().feed("data: str\n\n")  # type: ignore[arg-type]
