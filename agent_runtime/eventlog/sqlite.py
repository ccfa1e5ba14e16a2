"""The SQLite event log: one database file per agent, WAL mode, `synchronous=NORMAL`.

Every SQLite call runs on the shard-wide `SqliteExecutor` (a small thread pool shared by all logs),
never on the event loop, and never on a thread of its own: the thread count does not grow with the
number of agents. Each log owns one connection and serializes its calls with an `asyncio.Lock`
that is held until the worker thread is done with the connection (even if the awaiting task is
cancelled), so a connection is never used by two threads at once.

`append` is one `BEGIN IMMEDIATE ... COMMIT` transaction that assigns `seq = head + 1, ...`
explicitly inside it; a failed transaction rolls back and consumes no seq. It returns only after
the commit. See `docs/durability.md` for what the commit guarantees.

A damaged file (`eventlog.damage`; `quick_check` at open up to `quick_check_max_bytes`) raises
`LogCorrupt` on the call that found it; then every call but `close()` does, and `on_corrupt` is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agent_runtime.eventlog.base import DuplicateClientId, EventLog, EventLogError, LogClosed, LogCorrupt
from agent_runtime.eventlog.damage import is_corruption, quick_check
from agent_runtime.eventlog.executor import ExecutorClosed, SqliteExecutor
from agent_runtime.eventlog.memory import (
    DEFAULT_SNAPSHOTS_KEPT,
    PreparedEvent,
    check_kinds,
    check_limit,
    check_snapshot_seq,
    encode_state,
    prepare_batch,
)
from agent_runtime.events import SCHEMA_VERSION, Event, NewEvent, decode_data

T = TypeVar("T")

# Version of the file layout below (the `meta` table); independent of the event SCHEMA_VERSION.
LOG_SCHEMA_VERSION = 1

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds
# Page cache per connection (KiB). SQLite's default is 2 MiB; thousands of logs may be open.
DEFAULT_CACHE_KIB = 256
# Truncate the WAL file back to this size after a checkpoint (bytes).
JOURNAL_SIZE_LIMIT = 1 << 20
# Prepared-statement cache per connection (the log uses ~10 distinct statements).
CACHED_STATEMENTS = 32
# `PRAGMA quick_check` at open() up to this size (~1 ms/MB cached, ~20 ms/MB cold: docs/durability.md).
QUICK_CHECK_MAX_BYTES = 2 << 20

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS events ("
    " seq INTEGER PRIMARY KEY,"
    " kind TEXT NOT NULL,"
    " data BLOB NOT NULL,"
    " ts REAL NOT NULL,"
    " client_id TEXT,"
    " schema INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_client_id ON events (client_id) WHERE client_id IS NOT NULL",
    # No (kind, seq) index: it doubled the bytes every commit writes (bench/turn_cost.py: 140 KB →
    # 58 KB per turn without it), and its readers do not need it: `last_of_kind` walks back from
    # the newest event (the status it looks for is near the end) and `read_kinds` serves a wake,
    # which reads almost every event anyway.
    "DROP INDEX IF EXISTS events_kind_seq",
    "CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, state BLOB NOT NULL)",
)

_COLUMNS = "seq, kind, data, ts, client_id"
_SQL_HEAD = "SELECT coalesce(max(seq), 0) FROM events"
_SQL_INSERT = "INSERT INTO events (seq, kind, data, ts, client_id, schema) VALUES (?, ?, ?, ?, ?, ?)"
_SQL_READ = f"SELECT {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
_SQL_LAST_OF_KIND = f"SELECT {_COLUMNS} FROM events WHERE kind = ? ORDER BY seq DESC LIMIT 1"
_SQL_FIND_CLIENT_ID = "SELECT seq FROM events WHERE client_id = ?"
_SQL_SAVE_SNAPSHOT = "INSERT OR REPLACE INTO snapshots (seq, state) VALUES (?, ?)"
_SQL_PRUNE_SNAPSHOTS = "DELETE FROM snapshots WHERE seq NOT IN (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT ?)"
_SQL_LATEST_SNAPSHOT = "SELECT seq, state FROM snapshots ORDER BY seq DESC LIMIT 1"


def create_schema(conn: sqlite3.Connection) -> None:
    """The tables of a new log file and its layout version (inside the caller's transaction)."""
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (LOG_SCHEMA_VERSION,))


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _to_events(rows: list[tuple[int, str, bytes, float, str | None]]) -> list[Event]:
    return [Event(seq=s, kind=k, data=decode_data(d), ts=t, client_id=c) for s, k, d, t, c in rows]


@contextlib.contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE` (take the write lock up front) ... `COMMIT`; roll back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class SqliteEventLog(EventLog):
    """One agent's event log in its own SQLite file (`path`), run on a shared `SqliteExecutor`."""

    __slots__ = (
        "path",
        "_executor",
        "_clock",
        "_snapshots_kept",
        "_busy_timeout",
        "_cache_kib",
        "_synchronous",
        "_conn",
        "_lock",
        "_on_corrupt",
        "_quick_check_max_bytes",
        "corrupt",
        "bytes_appended",
    )

    def __init__(
        self,
        path: Path,
        executor: SqliteExecutor,
        clock: Callable[[], float] = time.time,
        snapshots_kept: int = DEFAULT_SNAPSHOTS_KEPT,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        cache_kib: int = DEFAULT_CACHE_KIB,
        synchronous: str = "NORMAL",
        on_corrupt: Callable[[LogCorrupt], None] | None = None,
        quick_check_max_bytes: int = QUICK_CHECK_MAX_BYTES,
    ) -> None:
        if snapshots_kept < 1:
            raise ValueError("snapshots_kept must be >= 1")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be 'NORMAL' (survives kill -9) or 'FULL' (also power loss)")
        self.path = Path(path)
        self._executor = executor
        self._clock = clock
        self._snapshots_kept = snapshots_kept
        self._busy_timeout = busy_timeout
        self._cache_kib = cache_kib
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._on_corrupt = on_corrupt
        self._quick_check_max_bytes = quick_check_max_bytes
        #: The first `LogCorrupt` this log met; from then on every call but `close()` raises it.
        self.corrupt: LogCorrupt | None = None
        #: Sum of the encoded `data` bytes committed through this object (metrics).
        self.bytes_appended = 0

    def __repr__(self) -> str:
        return f"SqliteEventLog({str(self.path)!r}, open={self.is_open})"

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    # -- running calls on the executor ---------------------------------------------------------

    async def _locked(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the executor while holding the log's lock.

        The lock is released by the worker future's completion, not by this coroutine, so a
        cancelled caller never lets a second call reach the connection while `fn` still runs.
        """
        def guarded() -> T:
            try:
                return fn()
            except sqlite3.DatabaseError as exc:
                if is_corruption(exc):
                    raise LogCorrupt(str(self.path), str(exc)) from exc
                raise

        await self._lock.acquire()
        try:
            fut = self._executor.submit(guarded)
        except BaseException:
            self._lock.release()
            raise
        fut.add_done_callback(self._release)
        return await asyncio.shield(fut)

    def _release(self, fut: asyncio.Future[Any]) -> None:
        exc = None if fut.cancelled() else fut.exception()  # retrieved: the caller may have been cancelled
        self._lock.release()
        if isinstance(exc, LogCorrupt) and self.corrupt is None:
            self.corrupt = exc
            if self._on_corrupt is not None:  # on the loop (a future's callback), even if the caller was cancelled
                self._on_corrupt(exc)

    def _refuse_if_corrupt(self) -> None:
        if self.corrupt is not None:
            raise self.corrupt.again()

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the executor; `LogClosed` if the log is not open."""
        self._refuse_if_corrupt()
        if self._conn is None:
            raise LogClosed(f"event log {self.path} is not open")

        def run() -> T:
            conn = self._conn
            if conn is None:  # closed while this call waited for the lock
                raise LogClosed(f"event log {self.path} is not open")
            return fn(conn)

        return await self._locked(run)

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        self._refuse_if_corrupt()
        await self._locked(self._connect)

    async def check(self) -> None:
        """A full `PRAGMA quick_check` now, whatever the file's size; `LogCorrupt` if it fails."""
        await self._call(lambda conn: quick_check(conn, self.path))

    def _connect(self) -> None:
        if self._conn is not None:
            return
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # autocommit: transactions are explicit BEGIN IMMEDIATE/COMMIT
            check_same_thread=False,  # the pool's threads take turns (see _locked)
            cached_statements=CACHED_STATEMENTS,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise EventLogError(f"{self.path}: could not enable WAL (journal_mode={mode})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute(f"PRAGMA cache_size = -{int(self._cache_kib)}")
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            self._ensure_schema(conn)
            if os.path.getsize(self.path) <= self._quick_check_max_bytes:
                quick_check(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        version = self._schema_version(conn)
        if version is None:
            with _write_transaction(conn):
                create_schema(conn)
            version = self._schema_version(conn)
        if version != LOG_SCHEMA_VERSION:
            raise EventLogError(
                f"{self.path}: log schema version {version!r}, this runtime supports {LOG_SCHEMA_VERSION}"
            )

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int | None:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:  # no meta table: a new file
            return None
        return None if row is None else int(row[0])

    async def close(self) -> None:
        try:
            await self._locked(self._disconnect)
        except ExecutorClosed:
            # The shard is shutting down: close on this thread (no worker can be using it).
            async with self._lock:
                self._disconnect()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # the last connection checkpoints the WAL into the database file

    # -- writes --------------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[Event]:
        self._refuse_if_corrupt()
        if self._conn is None:
            raise LogClosed(f"event log {self.path} is not open")
        prepared = prepare_batch(events)
        if not prepared:
            return []
        return await self._call(lambda conn: self._append(conn, prepared))

    def _append(self, conn: sqlite3.Connection, prepared: list[PreparedEvent]) -> list[Event]:
        client_ids = [cid for _, _, cid in prepared if cid is not None]
        with _write_transaction(conn):
            ts = float(self._clock())  # under the write lock: ts never decreases along seq
            if client_ids:
                found = dict(
                    conn.execute(
                        f"SELECT client_id, seq FROM events WHERE client_id IN ({_placeholders(len(client_ids))})",
                        client_ids,
                    ).fetchall()
                )
                for cid in client_ids:  # report the first duplicate in batch order
                    if cid in found:
                        raise DuplicateClientId(cid, found[cid])
            head = conn.execute(_SQL_HEAD).fetchone()[0]
            rows = [
                (head + i, kind, raw, ts, cid, SCHEMA_VERSION) for i, (kind, raw, cid) in enumerate(prepared, start=1)
            ]
            conn.executemany(_SQL_INSERT, rows)
        self.bytes_appended += sum(len(raw) for _, raw, _ in prepared)
        return [
            Event(seq=seq, kind=kind, data=decode_data(raw), ts=ts, client_id=cid)
            for seq, kind, raw, ts, cid, _ in rows
        ]

    async def save_snapshot(self, seq: int, state: dict[str, Any]) -> None:
        self._refuse_if_corrupt()
        if self._conn is None:
            raise LogClosed(f"event log {self.path} is not open")
        raw = encode_state(state)
        keep = self._snapshots_kept

        def save(conn: sqlite3.Connection) -> None:
            with _write_transaction(conn):
                check_snapshot_seq(seq, conn.execute(_SQL_HEAD).fetchone()[0])
                conn.execute(_SQL_SAVE_SNAPSHOT, (seq, raw))
                conn.execute(_SQL_PRUNE_SNAPSHOTS, (keep,))

        await self._call(save)

    # -- reads ---------------------------------------------------------------------------------

    async def read(self, after: int = 0, limit: int | None = None) -> list[Event]:
        check_limit(limit)
        sql_limit = -1 if limit is None else limit
        return await self._call(lambda conn: _to_events(conn.execute(_SQL_READ, (after, sql_limit)).fetchall()))

    async def read_kinds(self, kinds: Sequence[str], after: int = 0) -> list[Event]:
        wanted = check_kinds(kinds)
        if not wanted:
            if self._conn is None:
                raise LogClosed(f"event log {self.path} is not open")
            return []
        sql = f"SELECT {_COLUMNS} FROM events WHERE kind IN ({_placeholders(len(wanted))}) AND seq > ? ORDER BY seq"
        return await self._call(lambda conn: _to_events(conn.execute(sql, (*wanted, after)).fetchall()))

    async def read_seqs(self, seqs: Sequence[int]) -> list[Event]:
        wanted = sorted({int(s) for s in seqs})

        def read(conn: sqlite3.Connection) -> list[Event]:
            out: list[Event] = []
            for i in range(0, len(wanted), 500):
                part = wanted[i : i + 500]
                sql = f"SELECT {_COLUMNS} FROM events WHERE seq IN ({_placeholders(len(part))}) ORDER BY seq"
                out.extend(_to_events(conn.execute(sql, part).fetchall()))
            return out

        return await self._call(read)

    async def last_of_kind(self, kind: str) -> Event | None:
        def last(conn: sqlite3.Connection) -> Event | None:
            row = conn.execute(_SQL_LAST_OF_KIND, (kind,)).fetchone()
            return None if row is None else _to_events([row])[0]

        return await self._call(last)

    async def head(self) -> int:
        return await self._call(lambda conn: int(conn.execute(_SQL_HEAD).fetchone()[0]))

    async def find_client_id(self, client_id: str) -> int | None:
        def find(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(_SQL_FIND_CLIENT_ID, (client_id,)).fetchone()
            return None if row is None else int(row[0])

        return await self._call(find)

    async def latest_snapshot(self) -> tuple[int, dict[str, Any]] | None:
        def latest(conn: sqlite3.Connection) -> tuple[int, dict[str, Any]] | None:
            row = conn.execute(_SQL_LATEST_SNAPSHOT).fetchone()
            return None if row is None else (int(row[0]), decode_data(row[1]))

        return await self._call(latest)


__all__ = ["LOG_SCHEMA_VERSION", "QUICK_CHECK_MAX_BYTES", "SqliteEventLog", "SqliteExecutor", "create_schema"]

