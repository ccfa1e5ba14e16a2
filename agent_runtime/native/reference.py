"""Slow, obvious pure-Python references for the native core; the property tests hold the Rust
implementations to these (tests/unit/native/).

Token counting has no reference here: its oracle is tiktoken itself, loaded offline from the
vocab files in tests/unit/native/vocab/. Partial-JSON snapshots are checked against jiter.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------- token counting


def incremental_totals(pieces: Iterable[str], count: Callable[[str], int]) -> list[int]:
    """Total after each append, by recounting the whole text every time."""
    text = ""
    totals = []
    for piece in pieces:
        text += piece
        totals.append(count(text))
    return totals


# ---------------------------------------------------------------- SSE (WHATWG §9.2.6)


@dataclass(frozen=True)
class RefSseEvent:
    event: str
    data: str
    id: str
    retry: int | None


def parse_sse(stream: bytes) -> list[RefSseEvent]:
    """Parse a whole event stream at once (the incomplete last event is discarded)."""
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    # Split into lines on CRLF, LF or CR; the text after the last terminator is incomplete.
    lines: list[bytes] = []
    start = 0
    i = 0
    while i < len(stream):
        c = stream[i : i + 1]
        if c in (b"\n", b"\r"):
            lines.append(stream[start:i])
            if c == b"\r" and stream[i + 1 : i + 2] == b"\n":
                i += 1
            start = i + 1
        i += 1
    events: list[RefSseEvent] = []
    event_type, data, last_id, retry = "", None, "", None
    for raw in lines:
        line = raw.decode("utf-8", errors="replace")
        if line == "":
            if data is not None:
                events.append(RefSseEvent(event_type or "message", data, last_id, retry))
            event_type, data, retry = "", None, None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            event_type = value
        elif field == "data":
            data = value if data is None else data + "\n" + value
        elif field == "id":
            if "\0" not in value:
                last_id = value
        elif field == "retry":
            if value and all(ch in "0123456789" for ch in value):
                retry = min(int(value), 2**64 - 1)  # the native parser saturates at u64::MAX
    return events


# ---------------------------------------------------------------- partial JSON


def json_value_ends(doc: str, max_depth: int = 1) -> list[tuple[tuple[str | int, ...], Any, int]]:
    """(path, value, index) for each value at depth 1..max_depth and the whole document (path
    ``()``), where ``index`` is the number of characters after which the value is known to be
    complete: the closing character of strings, literals and containers; for numbers the
    character after them (or the end of the text)."""
    out: list[tuple[tuple[str | int, ...], Any, int]] = []
    dec = json.JSONDecoder()
    ws = " \t\n\r"

    def skip(i: int) -> int:
        while i < len(doc) and doc[i] in ws:
            i += 1
        return i

    def value(i: int, path: tuple[str | int, ...]) -> tuple[Any, int, int]:
        """Parse the value at i; return (value, end index, completion index)."""
        c = doc[i]
        if c == "{":
            obj: dict[str, Any] = {}
            i = skip(i + 1)
            if doc[i] == "}":
                return obj, i + 1, i + 1
            while True:
                key, i = dec.raw_decode(doc, i)
                i = skip(i)
                assert doc[i] == ":"
                v, i, done = value(skip(i + 1), (*path, key))
                if 0 < len(path) + 1 <= max_depth:
                    out.append(((*path, key), v, done))
                obj[key] = v
                i = skip(i)
                if doc[i] == "}":
                    return obj, i + 1, i + 1
                i = skip(i + 1)
        if c == "[":
            arr: list[Any] = []
            i = skip(i + 1)
            if doc[i] == "]":
                return arr, i + 1, i + 1
            while True:
                v, i, done = value(i, (*path, len(arr)))
                if 0 < len(path) + 1 <= max_depth:
                    out.append(((*path, len(arr)), v, done))
                arr.append(v)
                i = skip(i)
                if doc[i] == "]":
                    return arr, i + 1, i + 1
                i = skip(i + 1)
        v, end = dec.raw_decode(doc, i)
        is_number = c == "-" or c.isdigit()
        return v, end, (min(end + 1, len(doc)) if is_number else end)

    v, end, done = value(skip(0), ())
    out.append(((), v, done))
    return out


# ---------------------------------------------------------------- diff


def unified_diff(a: str, b: str, context: int = 3) -> str:
    """difflib's unified diff with git's missing-newline marker."""
    out = []
    for line in difflib.unified_diff(a.splitlines(True), b.splitlines(True), "a", "b", n=context):
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n\\ No newline at end of file\n")
    return "".join(out)


def _lines(s: str) -> list[str]:
    """Lines of s, each keeping its "\n" (a "\r" stays part of the line)."""
    parts = s.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def apply_unified(patch: str, a: str) -> str:
    """Apply a unified diff exactly (no fuzz); AssertionError if it does not match."""
    old = _lines(a)
    lines = _lines(patch)
    out: list[str] = []
    pos = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.startswith("@@ -"):
            continue
        start_s, _, len_s = line[4:].split(" ")[0].partition(",")
        old_len = int(len_s) if len_s else 1
        start = int(start_s) - 1 if old_len else int(start_s)
        out.extend(old[pos:start])
        pos = start
        while i < len(lines) and lines[i][:1] in (" ", "-", "+"):
            tag, text = lines[i][0], lines[i][1:]
            if i + 1 < len(lines) and lines[i + 1].startswith("\\"):
                text = text[:-1]
                i += 1
            if tag in " -":
                assert old[pos] == text, (pos, old[pos], text)
                pos += 1
            if tag in " +":
                out.append(text)
            i += 1
    out.extend(old[pos:])
    return "".join(out)


# ---------------------------------------------------------------- history analysis


@dataclass
class RefHistoryReport:
    exact_duplicates: list[tuple[int, int]]
    near_duplicates: list[tuple[int, int, float]]
    superseded: list[tuple[int, int]]


def _line_set(text: str) -> frozenset[str]:
    return frozenset(line.rstrip("\r") for line in text.split("\n") if line.strip())


def analyze_history(
    outputs: Sequence[str], paths: Sequence[str | None] | None = None, threshold: float = 0.8
) -> RefHistoryReport:
    """Pairwise O(n²) version of `agent_runtime.native.analyze_history` (without its
    candidate pruning: with at most 64 outputs per line the two agree)."""
    first: dict[str, int] = {}
    exact: list[tuple[int, int]] = []
    near: list[tuple[int, int, float]] = []
    sets: dict[int, frozenset[str]] = {}
    for i, text in enumerate(outputs):
        h = hashlib.sha256(text.encode()).hexdigest()
        if h in first:
            exact.append((i, first[h]))
            continue
        first[h] = i
        s = _line_set(text)
        if len(s) >= 3:
            best: tuple[int, float] | None = None
            for j, other in sets.items():
                sim = len(s & other) / len(s | other)
                if sim >= threshold and (best is None or sim > best[1]):
                    best = (j, sim)
            if best is not None:
                near.append((i, best[0], best[1]))
            sets[i] = s
    superseded: list[tuple[int, int]] = []
    if paths is not None:
        last: dict[str, int] = {}
        for i, p in enumerate(paths):
            if p is not None:
                if p in last:
                    superseded.append((last[p], i))
                last[p] = i
        superseded.sort()
    return RefHistoryReport(exact, near, superseded)
