"""Diff: apply(diff(a, b), a) == b for the Diff object and its unified text, the unified text is
what a plain unified-diff reader applies, difflib's output applies, and mismatches raise."""

from __future__ import annotations

import difflib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_corpus import edit_lines, python_file

from agent_runtime import native
from agent_runtime.native import reference

_lines = st.sampled_from(["a\n", "b\n", "c\n", "\n", "x = 1\n", "é\n", "tail", "r\r\n", "  \n", "}\n"])
texts = st.lists(_lines, max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(a=texts, b=texts, context=st.integers(0, 4))
def test_diff_round_trips(a: str, b: str, context: int) -> None:
    d = native.diff(a, b)
    assert native.apply_diff(d, a) == b
    text = d.unified(context=context)
    assert native.apply_diff(text, a) == b
    assert reference.apply_unified(text, a) == b
    assert (text == "") == (a == b) == (len(d) == 0)


@settings(max_examples=100, deadline=None)
@given(a=texts, b=texts)
def test_difflib_output_applies(a: str, b: str) -> None:
    assert native.apply_diff(reference.unified_diff(a, b), a) == b


def test_hunks_describe_the_changes() -> None:
    d = native.diff("a\nb\nc\n", "a\nB\nc\nd\n")
    assert [(h.old_start, h.old_end, h.new_start, h.new_end, h.removed, h.added) for h in d.hunks] == [
        (1, 2, 1, 2, ["b\n"], ["B\n"]),
        (3, 3, 3, 4, [], ["d\n"]),
    ]
    assert d.unified(from_file="x.py", to_file="x.py").startswith("--- x.py\n+++ x.py\n@@ -1,3 +1,4 @@\n")
    assert native.diff("a", "b").unified() == (
        "--- a\n+++ b\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n"
    )


def test_large_files_round_trip() -> None:
    a = python_file(5000, seed=1)
    b = edit_lines(a, 0.05, seed=2)
    d = native.diff(a, b)
    assert native.apply_diff(d.unified(), a) == b
    changed = {i for h in d.hunks for i in range(h.old_start, h.old_end)}
    matcher_changed = {
        i
        for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, a.splitlines(True), b.splitlines(True), autojunk=False).get_opcodes()
        if tag != "equal"
        for i in range(i1, i2)
    }
    # Different algorithms, but both describe a small edit of a large file.
    assert len(changed) < 0.1 * 5000 and len(matcher_changed) < 0.1 * 5000


def test_patch_that_does_not_apply_raises_patch_error() -> None:
    d = native.diff("a\nb\n", "a\nc\n")
    with pytest.raises(native.PatchError, match="does not apply"):
        native.apply_diff(d, "a\nX\n")
    with pytest.raises(native.PatchError, match="does not fit"):
        native.apply_diff(d, "")
    with pytest.raises(native.PatchError, match="more lines than its header"):
        native.apply_diff("@@ -1 +1 @@\n-a\n-b\n", "a\nb\n")
    with pytest.raises(native.PatchError, match="ends inside a hunk"):
        native.apply_diff("@@ -1,2 +1,2 @@\n a\n", "a\nb\n")
    with pytest.raises(TypeError):
        native.apply_diff(42, "a")  # type: ignore[arg-type]
    assert issubclass(native.PatchError, ValueError)
