"""The event-log contract every backend implements (in-memory and SQLite).

An agent's log is append-only. `append` commits a batch atomically and only then returns the
committed `Event`s (with their gap-free `seq`): nobody may see an event before its commit.
Reads are range queries (`seq > after`), which serve replay, client catch-up and startup alike.
A snapshot is the agent's derived state at some `seq`; startup is latest snapshot + events after it.

The contract test suite in `tests/unit/test_eventlog_contract.py` runs against every backend.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from agent_runtime import errors
from agent_runtime.events import Event, NewEvent


class EventLogError(errors.Error, code="event_log"):
    """Base of the event-log errors."""


class DuplicateClientId(EventLogError, code="duplicate_client_id"):
    """An event with this `client_id` is already in the log; `seq` is the original one."""

    def __init__(self, client_id: str, seq: int) -> None:
        super().__init__(f"client id {client_id!r} already committed at seq {seq}")
        self.client_id = client_id
        self.seq = seq


class LogClosed(EventLogError, code="log_closed"):
    """The log was used after `close()` (or before `open()`)."""


class EventLog(abc.ABC):
    """One agent's durable, append-only event log."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Open (creating if needed). Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release files/connections. Idempotent; the log can be opened again."""

    @abc.abstractmethod
    async def append(self, events: Sequence[NewEvent]) -> list[Event]:
        """Commit `events` atomically, in order, and return them with their `seq`.

        Raises `DuplicateClientId` (committing nothing) if any `client_id` is already present.
        """

    @abc.abstractmethod
    async def read(self, after: int = 0, limit: int | None = None) -> list[Event]:
        """Events with `seq > after`, ascending, at most `limit`."""

    @abc.abstractmethod
    async def read_kinds(self, kinds: Sequence[str], after: int = 0) -> list[Event]:
        """Events of the given kinds with `seq > after`, ascending."""

    @abc.abstractmethod
    async def read_seqs(self, seqs: Sequence[int]) -> list[Event]:
        """The events with these `seq`s, ascending (seqs not in the log are left out)."""

    @abc.abstractmethod
    async def last_of_kind(self, kind: str) -> Event | None:
        """The newest event of `kind`, or None."""

    @abc.abstractmethod
    async def head(self) -> int:
        """The last committed `seq` (0 for an empty log)."""

    @abc.abstractmethod
    async def find_client_id(self, client_id: str) -> int | None:
        """The `seq` of the event carrying `client_id`, or None."""

    @abc.abstractmethod
    async def save_snapshot(self, seq: int, state: dict[str, Any]) -> None:
        """Store the derived state as of `seq` (keeps only the newest few)."""

    @abc.abstractmethod
    async def latest_snapshot(self) -> tuple[int, dict[str, Any]] | None:
        """`(seq, state)` of the newest snapshot, or None."""
