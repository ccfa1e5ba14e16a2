"""Partial JSON: every snapshot equals jiter's trailing-strings partial mode on the same prefix;
value/document events fire on the fragment that completes them; malformed input is an error
with the byte offset."""

from __future__ import annotations

import json
import os
from typing import Any

import jiter
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_corpus import fragments, tool_arguments

from agent_runtime import native
from agent_runtime.native import reference

_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def documents(draw: st.DrawFn) -> str:
    value = draw(st.one_of(st.dictionaries(_text, _values, max_size=5), _values))
    indent = draw(st.sampled_from([None, 1, 2]))
    return json.dumps(value, ensure_ascii=draw(st.booleans()), indent=indent)


def jiter_partial(prefix: str) -> Any:
    try:
        return ("ok", jiter.from_json(prefix.encode(), partial_mode="trailing-strings"))
    except ValueError:
        return ("none", None)


def split(doc: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(doc)) for c in cuts} | {0, len(doc)})
    return [doc[a:b] for a, b in zip(points, points[1:])]


@settings(max_examples=int(os.environ.get("NATIVE_FUZZ_EXAMPLES", 250)), deadline=None)
@given(doc=documents(), cuts=st.lists(st.integers(0, 300), max_size=15))
def test_snapshots_equal_jiter_and_events_fire_on_completion(doc: str, cuts: list[int]) -> None:
    parser = native.PartialJsonParser()
    pieces = split(doc, cuts)
    seen: list[tuple[tuple[str | int, ...], Any, int]] = []
    fed = 0
    for piece in pieces:
        events = parser.feed(piece)
        fed += len(piece)
        seen += [(e.path, e.value, fed) for e in events]
        kind, expected = jiter_partial(doc[:fed])
        snap = parser.snapshot()
        if kind == "none":
            assert snap is None
        else:
            assert snap == expected
    seen += [(e.path, e.value, fed) for e in parser.finish()]
    assert parser.done
    # Reference: each depth-1 value (and the document) is reported by the first fragment that
    # reaches the character completing it.
    ends = [0]
    for p in pieces:
        ends.append(ends[-1] + len(p))
    want = []
    for path, value, at in reference.json_value_ends(doc):
        first = next((e for e in ends[1:] if e >= at), ends[-1])
        want.append((path, value, first))
    if want and want[-1][0] == () and not doc.rstrip().endswith(("}", "]", '"', "e", "l")):
        # A top-level number is complete only at finish().
        want[-1] = ((), want[-1][1], ends[-1])
    assert seen == want
    assert seen[-1][1] == json.loads(doc)


def test_realistic_tool_call_in_small_fragments() -> None:
    args = tool_arguments(20_000)
    parser = native.PartialJsonParser()
    keys = []
    for i, frag in enumerate(fragments(args, seed=1)):
        for ev in parser.feed(frag):
            keys.append(ev.path)
        if i % 97 == 0:
            assert parser.snapshot() == jiter.from_json(args[: parser.offset].encode(), partial_mode="trailing-strings")
    assert keys == [("path",), ("content",), ("edits",), ("dry_run",), ()]
    assert parser.snapshot() == json.loads(args)


def test_max_event_depth() -> None:
    parser = native.PartialJsonParser(max_event_depth=2)
    events = parser.feed('{"a": [1, {"b": 2}], "c": 3}')
    assert [(e.path, e.value, e.done) for e in events] == [
        (("a", 0), 1, False),
        (("a", 1), {"b": 2}, False),
        (("a",), [1, {"b": 2}], False),
        (("c",), 3, False),
        ((), {"a": [1, {"b": 2}], "c": 3}, True),
    ]


@pytest.mark.parametrize(
    ("text", "offset"),
    [("[1,]", 3), ('{"a": 01}', 7), ('{"a" 1}', 5), ("[tru]", 4), ('"\\x"', 2), ('"a\nb"', 2), ("{} x", 3),
     ('"\\ud800x"', 7), ("[" * 600, 512)],
)
def test_malformed_input_raises_with_byte_offset(text: str, offset: int) -> None:
    parser = native.PartialJsonParser()
    with pytest.raises(native.JsonParseError) as info:
        parser.feed(text)
    assert info.value.offset == offset
    assert f"at byte offset {offset}" in str(info.value)
    with pytest.raises(native.JsonParseError):  # the parser stays failed
        parser.feed("1")


def test_offsets_are_utf8_bytes_and_finish_rejects_incomplete() -> None:
    parser = native.PartialJsonParser()
    parser.feed('["é",')
    with pytest.raises(native.JsonParseError) as info:
        parser.feed("]")
    assert info.value.offset == 6
    parser = native.PartialJsonParser()
    parser.feed('{"a": "b')
    with pytest.raises(native.JsonParseError, match="incomplete"):
        parser.finish()
    assert issubclass(native.JsonParseError, ValueError)


def test_snapshot_before_any_value_is_none() -> None:
    parser = native.PartialJsonParser()
    assert parser.snapshot() is None
    parser.feed("  ")
    assert parser.snapshot() is None
    parser.feed("12")
    assert parser.snapshot() == 12
    assert [e.value for e in parser.finish()] == [12]
