"""Read an agent's SQLite event log straight from disk, read-only, bypassing the runtime.

The integration tests judge the runtime by its files: `read_events` opens `events.db` with
`mode=ro` (the database file is never written; SQLite may rebuild the WAL index in `-shm`, which
is what any reader does after a crash) and returns every row in `seq` order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
from pathlib import Path
from typing import Any

import orjson


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    seq: int
    kind: str
    data: dict[str, Any]
    ts: float
    client_id: str | None


def _connect_ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)


def read_events(db: Path) -> list[Row]:
    with contextlib.closing(_connect_ro(db)) as conn:
        rows = conn.execute("SELECT seq, kind, data, ts, client_id FROM events ORDER BY seq").fetchall()
    return [Row(s, k, orjson.loads(d), t, c) for s, k, d, t, c in rows]


def read_snapshots(db: Path) -> list[tuple[int, dict[str, Any]]]:
    with contextlib.closing(_connect_ro(db)) as conn:
        rows = conn.execute("SELECT seq, state FROM snapshots ORDER BY seq").fetchall()
    return [(int(s), orjson.loads(raw)) for s, raw in rows]


def assert_gap_free(rows: list[Row], where: str = "") -> None:
    seqs = [r.seq for r in rows]
    assert seqs == list(range(1, len(seqs) + 1)), f"{where}: seqs are not gap-free 1..head: {seqs}"


def last_status(rows: list[Row]) -> dict[str, Any] | None:
    for r in reversed(rows):
        if r.kind == "status":
            return r.data
    return None


def turn_problems(rows: list[Row]) -> list[str]:
    """What is wrong with the (finished) turns in `rows`: every tool call announced once and
    answered once, every assistant message's calls answered, no interrupted or errored message."""
    problems: list[str] = []
    announced: dict[str, int] = {}
    answered: dict[str, int] = {}
    requested: list[str] = []
    for r in rows:
        if r.kind == "tool_call":
            announced[r.data["id"]] = announced.get(r.data["id"], 0) + 1
        elif r.kind == "tool_result":
            answered[r.data["tool_call_id"]] = answered.get(r.data["tool_call_id"], 0) + 1
        elif r.kind == "assistant_message":
            requested.extend(c["id"] for c in r.data.get("tool_calls", ()))
            if r.data.get("stop_reason") not in ("end_turn", "tool_use"):
                problems.append(f"seq {r.seq}: assistant message stopped with {r.data.get('stop_reason')!r}")
        elif r.kind == "error":
            problems.append(f"seq {r.seq}: error event {r.data}")
    for cid in requested:
        if announced.get(cid, 0) != 1:
            problems.append(f"tool call {cid}: {announced.get(cid, 0)} tool_call events (want 1)")
        if answered.get(cid, 0) != 1:
            problems.append(f"tool call {cid}: {answered.get(cid, 0)} tool_result events (want 1)")
    extra = set(announced) - set(requested)
    if extra:
        problems.append(f"tool_call events for calls no assistant message made: {sorted(extra)}")
    return problems


def fds_open_to(fragment: str) -> list[str]:
    """Targets of this process's open file descriptors whose path contains `fragment`."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if fragment in target:
                out.append(target)
    return out


def count_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def count_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def count_children() -> int:
    """Direct child processes of this process (every thread's children)."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/children", encoding="ascii") as f:
            total += len(f.read().split())
    return total
