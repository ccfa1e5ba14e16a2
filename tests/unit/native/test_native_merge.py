"""Three-way merge pinned to `git merge-file` (docs/native.md, "Merge semantics").

The fixture corpus in merge_corpus/ holds each case's inputs and git 2.39's output
(`git merge-file -p -L ours -L base -L theirs`); regenerate it with merge_corpus/make_corpus.py.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_runtime import native

CORPUS = Path(__file__).parent / "merge_corpus"
CASES = sorted(p.stem for p in CORPUS.glob("*.base"))


def read(name: str, ext: str) -> str:
    return (CORPUS / f"{name}.{ext}").read_bytes().decode()


def test_corpus_is_present() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", CASES)
def test_merge_equals_git_merge_file(name: str) -> None:
    result = native.merge3(read(name, "base"), read(name, "ours"), read(name, "theirs"))
    git_conflicts = int(read(name, "status"))
    assert result.text == read(name, "git")
    assert len(result.conflicts) == git_conflicts
    assert result.clean is (git_conflicts == 0)
    assert result.merged == (result.text if result.clean else None)


def test_conflict_regions_carry_ranges_and_text() -> None:
    r = native.merge3("a\nb\nc\nd\n", "a\nsame\nX\nd\n", "a\nsame\nY\nd\n")
    (c,) = r.conflicts
    assert (c.ours_start, c.ours_end, c.theirs_start, c.theirs_end) == (2, 3, 2, 3)
    assert (c.base_start, c.base_end) == (1, 3)
    assert (c.base, c.ours, c.theirs) == ("b\nc\n", "X\n", "Y\n")
    r = native.merge3("a\n", "b\n", "c\n", labels=("mine", "yours"))
    assert r.text == "<<<<<<< mine\nb\n=======\nc\n>>>>>>> yours\n"


def _unique_line_case(rng: random.Random) -> tuple[str, str, str]:
    base = [f"line {i}\n" for i in range(rng.randint(3, 25))]

    def edit(src: list[str]) -> str:
        out: list[str] = []
        for line in src:
            r = rng.random()
            if r < 0.12:
                out.append(line.upper())
            elif r < 0.2:
                continue
            elif r < 0.28:
                out += [line, f"ins {rng.randint(0, 3)}\n"]
            else:
                out.append(line)
        return "".join(out)

    return "".join(base), edit(base), edit(base)


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_random_merges_equal_live_git(tmp_path: Path) -> None:
    """On files whose lines are distinct (so both diff engines align them the same way) the
    merged text and the conflict count equal git's exactly."""
    rng = random.Random(20261125)
    for _ in range(60):
        base, ours, theirs = _unique_line_case(rng)
        for name, text in (("base", base), ("ours", ours), ("theirs", theirs)):
            (tmp_path / name).write_text(text)
        git = subprocess.run(
            ["git", "merge-file", "-p", "-L", "ours", "-L", "base", "-L", "theirs", "ours", "base", "theirs"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        result = native.merge3(base, ours, theirs)
        assert (result.text, len(result.conflicts)) == (git.stdout, git.returncode), (base, ours, theirs)


texts = st.lists(st.sampled_from(["a\n", "b\n", "c\n", "}\n", "\n", "x"]), max_size=12).map("".join)


@settings(max_examples=200, deadline=None)
@given(base=texts, ours=texts, theirs=texts)
def test_merge_laws(base: str, ours: str, theirs: str) -> None:
    assert native.merge3(base, ours, base).merged == ours
    assert native.merge3(base, base, theirs).merged == theirs
    assert native.merge3(base, ours, ours).merged == ours
    r = native.merge3(base, ours, theirs)
    assert r.clean is (not r.conflicts)
    assert r.merged == (r.text if r.clean else None)
