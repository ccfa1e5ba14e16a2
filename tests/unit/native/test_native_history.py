"""History analysis: duplicates, near duplicates and superseded files equal the O(n²) reference;
token counts come from the cache, so re-analysis never re-tokenizes."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_corpus import edit_lines, python_file

from agent_runtime import native
from agent_runtime.native import reference

_lines = st.sampled_from([f"line {i}\n" for i in range(12)] + ["\n", "  \n", "x\r\n"])
_outputs = st.lists(st.lists(_lines, max_size=10).map("".join), max_size=12)


@settings(max_examples=int(os.environ.get("NATIVE_FUZZ_EXAMPLES", 200)), deadline=None)
@given(
    outputs=_outputs,
    paths=st.lists(st.sampled_from([None, "a.py", "b.py"]), max_size=12),
    threshold=st.sampled_from([0.5, 0.8, 1.0]),
)
def test_matches_reference(outputs: list[str], paths: list[str | None], threshold: float) -> None:
    paths = (paths + [None] * len(outputs))[: len(outputs)]
    got = native.analyze_history(outputs, paths, threshold=threshold)
    want = reference.analyze_history(outputs, paths, threshold=threshold)
    assert got.exact_duplicates == want.exact_duplicates
    assert got.superseded == want.superseded
    # Ties go to the earliest equally similar output in both.
    assert [(i, j, round(s, 9)) for i, j, s in got.near_duplicates] == [
        (i, j, round(s, 9)) for i, j, s in want.near_duplicates
    ]


def test_realistic_history_and_cache() -> None:
    v1 = python_file(300, seed=1)
    v2 = edit_lines(v1, 0.04, seed=2)
    other = python_file(300, seed=3)
    outputs = [v1, "ok", v1, other, v2, "ok"]
    paths = ["src/a.py", None, "src/a.py", "src/b.py", "src/a.py", None]
    cache = native.TokenCache()
    r = native.analyze_history(outputs, paths, cache=cache)
    assert r.exact_duplicates == [(2, 0), (5, 1)]
    assert [(i, j) for i, j, _ in r.near_duplicates] == [(4, 0)]
    assert r.superseded == [(0, 2), (2, 4)]
    assert r.token_counts == native.count_tokens_many(outputs)
    assert cache.misses == 4  # distinct contents
    r2 = native.analyze_history(outputs, paths, cache=cache)
    assert r2.token_counts == r.token_counts
    assert cache.misses == 4, "re-analysis must not re-tokenize"
    assert native.analyze_history(outputs).token_counts == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="threshold"):
        native.analyze_history(["a"], threshold=1.5)
    with pytest.raises(ValueError, match="paths has 2 entries but outputs has 1"):
        native.analyze_history(["a"], paths=["x", "y"])
