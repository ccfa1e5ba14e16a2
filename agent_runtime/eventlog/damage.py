"""How a damaged SQLite log is recognised: which SQLite errors mean "the file is corrupt", and
`PRAGMA quick_check`. Both give `LogCorrupt` (`eventlog.base`), the error the host quarantines an
agent for; a full disk, a busy lock or an I/O error are not the file's fault and are not it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent_runtime.eventlog.base import LogCorrupt

# SQLite's primary result codes that say the file is damaged (extended codes keep them in the low byte).
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26


def is_corruption(exc: BaseException) -> bool:
    """Whether an SQLite error says the database file is damaged (not a full disk, a busy lock or
    an I/O error: those are not the file's fault)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in (SQLITE_CORRUPT, SQLITE_NOTADB)
    text = str(exc).lower()
    return "database disk image is malformed" in text or "file is not a database" in text


def quick_check(conn: sqlite3.Connection, path: Path) -> None:
    """`PRAGMA quick_check` (every page, not the index contents); `LogCorrupt` unless it says ok."""
    rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
    if rows != ["ok"]:
        raise LogCorrupt(str(path), "quick_check: " + "; ".join(r.replace("\n", " ") for r in rows))
