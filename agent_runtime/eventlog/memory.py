"""The in-memory event log: the reference semantics of the contract, for fast unit tests.

It behaves like `SqliteEventLog` in everything the contract says (gap-free seqs, atomic batches,
`DuplicateClientId` committing nothing, `LogClosed`, snapshot pruning), and stores the encoded
bytes of every event so the returned `Event`s never share mutable state with the caller or with
each other. Data survives `close()`/`open()` of the same object (like a file would).

The batch/argument validation helpers here are shared with the SQLite backend so both reject the
same inputs the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from agent_runtime.eventlog.base import DuplicateClientId, EventLog, LogClosed
from agent_runtime.events import Event, NewEvent, decode_data, encode_data

DEFAULT_SNAPSHOTS_KEPT = 2

# (kind, encoded data, client_id) of one event about to be appended.
PreparedEvent = tuple[str, bytes, str | None]


def prepare_batch(events: Sequence[NewEvent]) -> list[PreparedEvent]:
    """Validate and encode a batch before anything is written.

    Raises `TypeError`/`ValueError` for a malformed event (including unencodable data) and
    `ValueError` for a `client_id` repeated inside the batch — a caller bug, not an already
    committed event, so not `DuplicateClientId` (which promises the original `seq`).
    """
    if isinstance(events, NewEvent):
        raise TypeError("append() takes a sequence of NewEvent, not a single NewEvent")
    prepared: list[PreparedEvent] = []
    seen: set[str] = set()
    for ev in events:
        if not isinstance(ev, NewEvent):
            raise TypeError(f"expected NewEvent, got {type(ev).__name__}")
        if not isinstance(ev.kind, str) or not ev.kind:
            raise ValueError("event kind must be a non-empty string")
        if not isinstance(ev.data, dict):
            raise TypeError(f"event data must be a dict, got {type(ev.data).__name__}")
        if ev.client_id is not None:
            if not isinstance(ev.client_id, str):
                raise TypeError("client_id must be a string or None")
            if ev.client_id in seen:
                raise ValueError(f"client id {ev.client_id!r} appears twice in one batch")
            seen.add(ev.client_id)
        prepared.append((ev.kind, encode_data(ev.data), ev.client_id))
    return prepared


def check_kinds(kinds: Sequence[str]) -> list[str]:
    """The distinct kinds of a `read_kinds` call (refusing a bare string, which is a Sequence)."""
    if isinstance(kinds, str):
        raise TypeError("kinds must be a sequence of kind names, not a single string")
    return list(dict.fromkeys(kinds))


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0 or None")


def encode_state(state: dict[str, Any]) -> bytes:
    if not isinstance(state, dict):
        raise TypeError(f"snapshot state must be a dict, got {type(state).__name__}")
    return encode_data(state)


def check_snapshot_seq(seq: int, head: int) -> None:
    if seq < 0 or seq > head:
        raise ValueError(f"snapshot seq {seq} is outside the log (head {head})")


class MemoryEventLog(EventLog):
    """An `EventLog` in a Python list. Not durable; same semantics as the SQLite backend."""

    __slots__ = (
        "_clock",
        "_snapshots_kept",
        "_open",
        "_events",
        "_by_client",
        "_last_by_kind",
        "_snapshots",
        "bytes_appended",
    )

    def __init__(self, clock: Callable[[], float] = time.time, snapshots_kept: int = DEFAULT_SNAPSHOTS_KEPT) -> None:
        if snapshots_kept < 1:
            raise ValueError("snapshots_kept must be >= 1")
        self._clock = clock
        self._snapshots_kept = snapshots_kept
        self._open = False
        # _events[seq - 1] = (kind, data bytes, ts, client_id)
        self._events: list[tuple[str, bytes, float, str | None]] = []
        self._by_client: dict[str, int] = {}
        self._last_by_kind: dict[str, int] = {}
        self._snapshots: dict[int, bytes] = {}
        #: Sum of the encoded `data` bytes committed through this object (same as SQLite's).
        self.bytes_appended = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise LogClosed("event log is not open")

    def _event(self, seq: int) -> Event:
        kind, raw, ts, client_id = self._events[seq - 1]
        return Event(seq=seq, kind=kind, data=decode_data(raw), ts=ts, client_id=client_id)

    # -- writes --------------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[Event]:
        self._check_open()
        prepared = prepare_batch(events)
        for _, _, client_id in prepared:
            if client_id is not None and client_id in self._by_client:
                raise DuplicateClientId(client_id, self._by_client[client_id])
        if not prepared:
            return []
        ts = float(self._clock())
        first = len(self._events) + 1
        # Nothing below can fail: the batch is committed as a whole.
        for kind, raw, client_id in prepared:
            self._events.append((kind, raw, ts, client_id))
            seq = len(self._events)
            self._last_by_kind[kind] = seq
            if client_id is not None:
                self._by_client[client_id] = seq
            self.bytes_appended += len(raw)
        return [self._event(seq) for seq in range(first, len(self._events) + 1)]

    async def save_snapshot(self, seq: int, state: dict[str, Any]) -> None:
        self._check_open()
        raw = encode_state(state)
        check_snapshot_seq(seq, len(self._events))
        self._snapshots[seq] = raw
        for old in sorted(self._snapshots, reverse=True)[self._snapshots_kept :]:
            del self._snapshots[old]

    # -- reads ---------------------------------------------------------------------------------

    async def read(self, after: int = 0, limit: int | None = None) -> list[Event]:
        self._check_open()
        check_limit(limit)
        start = max(after, 0)
        stop = len(self._events) if limit is None else min(len(self._events), start + limit)
        return [self._event(seq) for seq in range(start + 1, stop + 1)]

    async def read_kinds(self, kinds: Sequence[str], after: int = 0) -> list[Event]:
        self._check_open()
        wanted = set(check_kinds(kinds))
        if not wanted:
            return []
        return [
            self._event(seq)
            for seq in range(max(after, 0) + 1, len(self._events) + 1)
            if self._events[seq - 1][0] in wanted
        ]

    async def read_seqs(self, seqs: Sequence[int]) -> list[Event]:
        self._check_open()
        return [self._event(seq) for seq in sorted(set(seqs)) if 1 <= seq <= len(self._events)]

    async def last_of_kind(self, kind: str) -> Event | None:
        self._check_open()
        seq = self._last_by_kind.get(kind)
        return None if seq is None else self._event(seq)

    async def head(self) -> int:
        self._check_open()
        return len(self._events)

    async def find_client_id(self, client_id: str) -> int | None:
        self._check_open()
        return self._by_client.get(client_id)

    async def latest_snapshot(self) -> tuple[int, dict[str, Any]] | None:
        self._check_open()
        if not self._snapshots:
            return None
        seq = max(self._snapshots)
        return seq, decode_data(self._snapshots[seq])
