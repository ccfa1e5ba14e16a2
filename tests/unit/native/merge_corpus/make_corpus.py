"""Regenerate the merge fixture corpus: each case's inputs and `git merge-file -p` output.

Run from the repository root: `.venv/bin/python tests/unit/native/merge_corpus/make_corpus.py`.
Files per case NAME: NAME.base, NAME.ours, NAME.theirs, NAME.git (git's merged text with
conflict markers) and NAME.status (git's exit code: the number of conflicts).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).parent


def lines(*items: str) -> str:
    return "".join(f"{i}\n" for i in items)


BASE = lines(*(f"line {i}" for i in range(12)))


def edit(text: str, changes: dict[int, str | None], inserts: dict[int, str] | None = None) -> str:
    out = []
    for i, line in enumerate(text.splitlines(True)):
        if inserts and i in inserts:
            out.append(inserts[i] + "\n")
        if i in changes:
            if changes[i] is not None:
                out.append(f"{changes[i]}\n")
        else:
            out.append(line)
    return "".join(out)


CASES: dict[str, tuple[str, str, str]] = {
    "01-disjoint-edits": (BASE, edit(BASE, {1: "ONE"}), edit(BASE, {9: "NINE"})),
    "02-identical-edits": (BASE, edit(BASE, {4: "same"}), edit(BASE, {4: "same"})),
    "03-same-line-conflict": (BASE, edit(BASE, {4: "ours"}), edit(BASE, {4: "theirs"})),
    "04-adjacent-lines-conflict": (BASE, edit(BASE, {4: "ours"}), edit(BASE, {5: "theirs"})),
    "05-one-line-apart-clean": (BASE, edit(BASE, {4: "ours"}), edit(BASE, {6: "theirs"})),
    "06-delete-vs-modify": (BASE, edit(BASE, {3: None, 4: None}), edit(BASE, {4: "changed"})),
    "07-insert-same-place": (BASE, edit(BASE, {}, {6: "ours insert"}), edit(BASE, {}, {6: "theirs insert"})),
    "08-conflicts-2-lines-apart-joined": (
        BASE,
        edit(BASE, {2: "o2", 5: "o5"}),
        edit(BASE, {2: "t2", 5: "t5"}),
    ),
    "09-conflicts-5-lines-apart-separate": (
        BASE,
        edit(BASE, {1: "o1", 7: "o7"}),
        edit(BASE, {1: "t1", 7: "t7"}),
    ),
    "10-gap-without-alnum-joined": (
        lines("a", "x", "}", "", "}", ")", "", "y", "z"),
        lines("a", "OURS", "}", "", "}", ")", "", "OURS2", "z"),
        lines("a", "THEIRS", "}", "", "}", ")", "", "THEIRS2", "z"),
    ),
    "11-common-prefix-suffix-refined": (
        lines("a", "b", "c", "d"),
        lines("a", "same1", "X", "same2", "d"),
        lines("a", "same1", "Y", "same2", "d"),
    ),
    "12-no-final-newline": ("a\nb\nc\nd\ne", "a\nB\nc\nd\ne", "a\nb\nc\nd\nE"),
    "13-no-final-newline-conflict": ("a\nb\nc", "a\nb\nours", "a\nb\ntheirs"),
    "14-crlf": ("a\r\nb\r\nc\r\nd\r\n", "a\r\nB\r\nc\r\nd\r\n", "a\r\nb\r\nc\r\nD\r\n"),
    "15-empty-base-both-add": ("", lines("x", "y"), lines("x", "z")),
    "16-one-side-deletes-all": (BASE, "", BASE),
    "17-repeated-lines-ambiguous": (
        lines("}", "x", "}", "line 3", "}", "", "x", "}"),
        lines("}", "x", "X", "line 3", "}", "", "x", "}", "}"),
        lines("}", "}", "line 3", "", "}", "x", "}"),
    ),
}


def git_merge(base: str, ours: str, theirs: str) -> tuple[str, int]:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d)
        for name, text in (("base", base), ("ours", ours), ("theirs", theirs)):
            (p / name).write_bytes(text.encode())
        r = subprocess.run(
            ["git", "merge-file", "-p", "-L", "ours", "-L", "base", "-L", "theirs", "ours", "base", "theirs"],
            cwd=d,
            capture_output=True,
        )
        return r.stdout.decode(), r.returncode


def main() -> None:
    for name, (base, ours, theirs) in CASES.items():
        merged, status = git_merge(base, ours, theirs)
        for ext, text in (("base", base), ("ours", ours), ("theirs", theirs), ("git", merged), ("status", f"{status}\n")):
            (HERE / f"{name}.{ext}").write_bytes(text.encode())


if __name__ == "__main__":
    main()
