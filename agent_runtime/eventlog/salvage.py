"""Salvage of a damaged SQLite log (`agentctl recover`): what SQLite can still read, into a new log.

`recover_log(db, now)` is blocking (run it off the event loop, with the log closed):

1. Copies `events.db` (and its `-wal`) into a scratch folder beside it, so the damaged file is
   only ever read, never opened for writing.
2. Reads the copy's events in `seq` order — pages of 500, and where a page fails, one row at a time
   (`seq = ?`: a lookup from the root reaches rows a range scan through a bad page cannot) — with
   `PRAGMA writable_schema` on, which lets SQLite read a file shorter than its header says (a
   truncated file is otherwise refused whole). It stops at the first seq that is missing, unreadable
   or whose data is not an event's JSON object: the log must stay gap-free, so what follows is
   lost even where readable (it stays in the kept file). Snapshots are not copied: the next wake
   replays the salvaged events from seq 1.
3. Writes them, columns unchanged, into a new log file (the runtime's schema) and validates it:
   `PRAGMA quick_check` ok, seqs exactly 1..n.
4. Swaps: the old file (with its `-wal`/`-shm`) is kept beside the new one as
   `events.db.corrupt-<UTC stamp>`, and the new file takes its place (`os.replace`, atomic).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent_runtime.eventlog.damage import quick_check
from agent_runtime.eventlog.sqlite import create_schema
from agent_runtime.events import decode_data

PAGE = 500
_COLUMNS = "seq, kind, data, ts, client_id, schema"
Row = tuple[Any, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Salvage:
    """What a recovery kept and lost."""

    salvaged: int
    """Events 1..salvaged are in the new log."""
    old_head: int | None
    """The damaged log's last seq, if SQLite could still read it."""
    stopped: str
    """Why the salvage stopped at seq `salvaged + 1`."""
    kept_as: str
    """The damaged file's new name, beside the new log."""

    @property
    def lost(self) -> int | None:
        """Events after the salvaged ones (None: unknown, the old head was unreadable)."""
        return None if self.old_head is None else max(0, self.old_head - self.salvaged)

    def to_dict(self) -> dict[str, Any]:
        return {"salvaged": self.salvaged, "old_head": self.old_head, "lost": self.lost, "stopped": self.stopped,
                "kept_as": self.kept_as}


def _valid(row: Row, seq: int) -> str | None:
    """Why `row` cannot be event `seq`, or None."""
    if row[0] != seq:
        return f"seq {seq} is missing"
    try:
        decode_data(row[2])
    except Exception as exc:  # noqa: BLE001 - any undecodable data ends the salvage
        return f"seq {seq}: data unreadable ({exc})"
    if not isinstance(row[1], str) or not isinstance(row[3], float | int):
        return f"seq {seq}: columns unreadable"
    return None


def read_rows(conn: sqlite3.Connection) -> tuple[list[Row], str]:
    """The rows 1..n that read back intact, and why the next one did not."""
    rows: list[Row] = []
    while True:
        after = len(rows)
        try:
            page = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                (after, PAGE)).fetchall()
        except sqlite3.DatabaseError:
            break  # row by row from here
        for row in page:
            why = _valid(row, len(rows) + 1)
            if why is not None:
                return rows, why
            rows.append(row)
        if len(page) < PAGE:
            return rows, "end of the log"
    while True:
        seq = len(rows) + 1
        try:
            row = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE seq = ?", (seq,)).fetchone()
        except sqlite3.DatabaseError as exc:
            return rows, f"seq {seq}: {exc}"
        if row is None:
            return rows, f"seq {seq} is missing"
        why = _valid(row, seq)
        if why is not None:
            return rows, why
        rows.append(row)


def _old_head(conn: sqlite3.Connection) -> int | None:
    try:
        head = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    except sqlite3.DatabaseError:
        return None
    return None if head is None else int(head)


def _write_log(path: Path, rows: list[Row]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        create_schema(conn)
        conn.executemany(f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        quick_check(conn, path)
        seqs = conn.execute("SELECT count(*), coalesce(min(seq), 1), coalesce(max(seq), 0) FROM events").fetchone()
        if tuple(seqs) != (len(rows), 1, len(rows)):
            raise RuntimeError(f"salvaged log {path} does not hold seqs 1..{len(rows)}: {seqs}")
    finally:
        conn.close()
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover_log(db: Path, now: datetime) -> Salvage:
    """Salvage `db` into a new log at the same path, keeping the old file beside it (module docstring)."""
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    scratch = db.parent / f".recover-{stamp}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        source = scratch / "damaged.db"
        shutil.copyfile(db, source)
        if Path(f"{db}-wal").exists():
            shutil.copyfile(f"{db}-wal", f"{source}-wal")
        conn = sqlite3.connect(source, isolation_level=None)
        try:
            try:
                conn.execute("PRAGMA writable_schema = ON")  # read a file shorter than its header says
                rows, stopped = read_rows(conn)
            except sqlite3.DatabaseError as exc:  # not even the schema reads (not a database at all)
                rows, stopped = [], f"seq 1: {exc}"
            old_head = _old_head(conn)
        finally:
            conn.close()
        fresh = scratch / "events.db"
        _write_log(fresh, rows)
        kept = db.with_name(f"{db.name}.corrupt-{stamp}")
        for suffix in ("-wal", "-shm"):  # they belong to the old file: never next to the new one
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{db}{suffix}", f"{kept}{suffix}")
        os.link(db, kept)
        os.replace(fresh, db)
        _fsync_dir(db.parent)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Salvage(len(rows), old_head, stopped, kept.name)
