"""The `EventLog` contract, run against every backend (in-memory and SQLite on `tmp_path`).

Every test here takes the parametrized `backend` fixture, so the same test functions check both
`MemoryEventLog` and `SqliteEventLog`. Backend-specific checks live in
`tests/integration/test_sqlite_eventlog.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_runtime.eventlog.base import DuplicateClientId, EventLog, LogClosed
from agent_runtime.eventlog.executor import SqliteExecutor
from agent_runtime.eventlog.memory import MemoryEventLog
from agent_runtime.eventlog.sqlite import SqliteEventLog
from agent_runtime.events import Event, NewEvent, encode_data


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class Backend:
    """Creates logs of one backend; `reopen` gives a fresh object on the same storage."""

    def __init__(self, name: str, root: Path | None, executor: SqliteExecutor | None) -> None:
        self.name = name
        self._root = root
        self._executor = executor
        self._ids = itertools.count()

    def __repr__(self) -> str:
        return self.name

    def new(self, *, clock: Callable[[], float] | None = None, snapshots_kept: int = 2) -> EventLog:
        clock = clock or FakeClock()
        if self.name == "memory":
            return MemoryEventLog(clock=clock, snapshots_kept=snapshots_kept)
        assert self._root is not None and self._executor is not None
        path = self._root / f"agent-{next(self._ids)}.sqlite"
        return SqliteEventLog(path, self._executor, clock=clock, snapshots_kept=snapshots_kept)

    def reopen(self, log: EventLog, *, snapshots_kept: int = 2) -> EventLog:
        """Another handle on the same data (memory: the same object — its storage is itself)."""
        if isinstance(log, SqliteEventLog):
            assert self._executor is not None
            return SqliteEventLog(log.path, self._executor, clock=FakeClock(5_000.0), snapshots_kept=snapshots_kept)
        return log

    def snapshot_seqs(self, log: EventLog) -> list[int]:
        """The seqs of all stored snapshots (peeks at the storage: the contract only shows the latest)."""
        if isinstance(log, MemoryEventLog):
            return sorted(log._snapshots)
        assert isinstance(log, SqliteEventLog)
        conn = sqlite3.connect(log.path)
        try:
            return [row[0] for row in conn.execute("SELECT seq FROM snapshots ORDER BY seq")]
        finally:
            conn.close()


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if request.param == "memory":
        yield Backend("memory", None, None)
        return
    with SqliteExecutor(max_workers=2) as executor:
        yield Backend("sqlite", tmp_path_factory.mktemp("eventlogs"), executor)


Maker = Callable[..., Awaitable[EventLog]]


@pytest_asyncio.fixture
async def make_log(backend: Backend) -> AsyncIterator[Maker]:
    """Open a new log (or `reopen=log`: a new handle on its storage); all are closed afterwards."""
    created: list[EventLog] = []

    async def make(*, reopen: EventLog | None = None, **kwargs: Any) -> EventLog:
        log = backend.new(**kwargs) if reopen is None else backend.reopen(reopen, **kwargs)
        created.append(log)
        await log.open()
        return log

    yield make
    for log in created:
        await log.close()


@pytest_asyncio.fixture
async def log(make_log: Maker) -> EventLog:
    return await make_log()


def ev(kind: str = "user_message", client_id: str | None = None, **data: Any) -> NewEvent:
    return NewEvent(kind=kind, data=data, client_id=client_id)


def seqs(events: list[Event]) -> list[int]:
    return [e.seq for e in events]


@pytest.mark.asyncio
class TestContract:
    async def test_empty_log(self, log: EventLog) -> None:
        assert await log.head() == 0
        assert await log.read() == []
        assert await log.read_kinds(["user_message"]) == []
        assert await log.last_of_kind("user_message") is None
        assert await log.find_client_id("c1") is None
        assert await log.latest_snapshot() is None

    async def test_append_assigns_gap_free_seqs_across_batches(self, log: EventLog) -> None:
        assert seqs(await log.append([ev(n=1)])) == [1]
        assert seqs(await log.append([ev(n=2), ev("usage", n=3), ev(n=4)])) == [2, 3, 4]
        assert await log.append([]) == []
        assert seqs(await log.append([ev(n=5), ev(n=6)])) == [5, 6]
        assert await log.head() == 6
        assert [e.data["n"] for e in await log.read()] == [1, 2, 3, 4, 5, 6]

    async def test_append_returns_what_read_returns(self, log: EventLog) -> None:
        appended = await log.append([ev(text="hi", client_id="c1"), ev("assistant_message", text="yo")])
        assert appended == await log.read()
        first, second = appended
        assert (first.kind, first.data, first.client_id) == ("user_message", {"text": "hi"}, "c1")
        assert (second.kind, second.data, second.client_id) == ("assistant_message", {"text": "yo"}, None)

    async def test_batch_shares_one_timestamp_from_the_clock(self, make_log: Maker) -> None:
        log = await make_log(clock=lambda: 1234.5)
        events = await log.append([ev(), ev()])
        assert [e.ts for e in events] == [1234.5, 1234.5]
        assert [e.ts for e in await log.read()] == [1234.5, 1234.5]

    async def test_read_after_and_limit(self, log: EventLog) -> None:
        await log.append([ev(n=i) for i in range(1, 11)])
        assert seqs(await log.read()) == list(range(1, 11))
        assert seqs(await log.read(after=7)) == [8, 9, 10]
        assert seqs(await log.read(after=2, limit=3)) == [3, 4, 5]
        assert seqs(await log.read(limit=2)) == [1, 2]
        assert await log.read(after=3, limit=0) == []
        assert await log.read(after=10) == []
        assert await log.read(after=99) == []
        assert seqs(await log.read(after=-5, limit=1)) == [1]
        with pytest.raises(ValueError):
            await log.read(limit=-1)

    async def test_read_kinds(self, log: EventLog) -> None:
        kinds = ["user_message", "tool_call", "usage", "tool_call", "usage", "user_message"]
        await log.append([ev(k, n=i) for i, k in enumerate(kinds, start=1)])
        assert seqs(await log.read_kinds(["tool_call"])) == [2, 4]
        assert seqs(await log.read_kinds(["usage", "user_message"])) == [1, 3, 5, 6]
        assert seqs(await log.read_kinds(("usage", "usage"), after=3)) == [5]
        assert seqs(await log.read_kinds(["user_message"], after=6)) == []
        assert await log.read_kinds(["error"]) == []
        assert await log.read_kinds([]) == []
        with pytest.raises(TypeError):
            await log.read_kinds("usage")

    async def test_read_seqs(self, log: EventLog) -> None:
        await log.append([ev(n=i) for i in range(1, 1201)])
        assert seqs(await log.read_seqs([5, 2, 2, 900])) == [2, 5, 900]
        assert [e.data["n"] for e in await log.read_seqs([7])] == [7]
        assert seqs(await log.read_seqs([0, -3, 1201, 5000])) == []  # not in the log: left out
        assert await log.read_seqs([]) == []
        many = list(range(1, 1201, 2))  # more than one SQL statement's worth
        assert seqs(await log.read_seqs(many)) == many

    async def test_last_of_kind(self, log: EventLog) -> None:
        await log.append([ev("status", s="a"), ev("usage", t=1)])
        await log.append([ev("status", s="b"), ev("user_message")])
        last = await log.last_of_kind("status")
        assert last is not None and (last.seq, last.data) == (3, {"s": "b"})
        usage = await log.last_of_kind("usage")
        assert usage is not None and usage.seq == 2
        assert await log.last_of_kind("error") is None

    async def test_find_client_id(self, log: EventLog) -> None:
        await log.append([ev("status"), ev(client_id="c1"), ev(client_id="c2")])
        await log.append([ev(client_id="c3")])
        assert await log.find_client_id("c1") == 2
        assert await log.find_client_id("c2") == 3
        assert await log.find_client_id("c3") == 4
        assert await log.find_client_id("nope") is None

    async def test_duplicate_client_id_commits_nothing(self, log: EventLog) -> None:
        await log.append([ev("status"), ev(client_id="c1", text="original")])
        before = await log.read()
        with pytest.raises(DuplicateClientId) as info:
            await log.append([ev(client_id="c9"), ev(client_id="c1", text="retry"), ev("status")])
        assert (info.value.client_id, info.value.seq) == ("c1", 2)
        assert await log.head() == 2
        assert await log.read() == before
        assert await log.find_client_id("c9") is None  # the rest of the batch was not committed
        # The failed batch consumed no seq.
        assert seqs(await log.append([ev(client_id="c9")])) == [3]
        assert seqs(await log.read()) == [1, 2, 3]

    async def test_first_duplicate_in_batch_order_is_reported(self, log: EventLog) -> None:
        await log.append([ev(client_id="a"), ev(client_id="b")])
        with pytest.raises(DuplicateClientId) as info:
            await log.append([ev(client_id="x"), ev(client_id="b"), ev(client_id="a")])
        assert (info.value.client_id, info.value.seq) == ("b", 2)

    async def test_duplicate_within_one_batch_commits_nothing(self, log: EventLog) -> None:
        await log.append([ev()])
        with pytest.raises(ValueError):
            await log.append([ev(client_id="c1"), ev("status"), ev(client_id="c1")])
        assert await log.head() == 1
        assert await log.find_client_id("c1") is None
        assert seqs(await log.append([ev(client_id="c1")])) == [2]

    @pytest.mark.parametrize(
        "bad",
        [
            NewEvent(kind="user_message", data={"x": object()}),
            NewEvent(kind="user_message", data={"x": {1, 2}}),
            NewEvent(kind="user_message", data=[1, 2]),  # type: ignore[arg-type]
            NewEvent(kind="", data={}),
            NewEvent(kind="user_message", data={}, client_id=7),  # type: ignore[arg-type]
        ],
        ids=["object", "set", "not-a-dict", "empty-kind", "int-client-id"],
    )
    async def test_invalid_event_commits_nothing(self, log: EventLog, bad: NewEvent) -> None:
        await log.append([ev()])
        with pytest.raises((TypeError, ValueError)):
            await log.append([ev(client_id="ok"), bad])
        assert await log.head() == 1
        assert await log.find_client_id("ok") is None
        assert seqs(await log.append([ev()])) == [2]

    async def test_append_takes_a_sequence(self, log: EventLog) -> None:
        with pytest.raises(TypeError):
            await log.append(ev())  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await log.append([{"kind": "user_message", "data": {}}])  # type: ignore[list-item]
        assert await log.head() == 0

    async def test_snapshots_latest_and_pruning(self, backend: Backend, make_log: Maker) -> None:
        log = await make_log(snapshots_kept=2)
        await log.append([ev(n=i) for i in range(10)])
        assert await log.latest_snapshot() is None
        await log.save_snapshot(3, {"turns": 3})
        assert await log.latest_snapshot() == (3, {"turns": 3})
        await log.save_snapshot(6, {"turns": 6, "nested": {"a": [1, 2]}})
        await log.save_snapshot(9, {"turns": 9})
        assert await log.latest_snapshot() == (9, {"turns": 9})
        assert backend.snapshot_seqs(log) == [6, 9]
        # An older snapshot does not become the latest (and is pruned right away).
        await log.save_snapshot(1, {"turns": 1})
        assert await log.latest_snapshot() == (9, {"turns": 9})
        assert backend.snapshot_seqs(log) == [6, 9]
        # Same seq again replaces it.
        await log.save_snapshot(9, {"turns": "nine"})
        assert await log.latest_snapshot() == (9, {"turns": "nine"})
        assert backend.snapshot_seqs(log) == [6, 9]

    async def test_snapshot_kept_count_is_configurable(self, backend: Backend, make_log: Maker) -> None:
        log = await make_log(snapshots_kept=1)
        await log.append([ev(), ev()])
        await log.save_snapshot(1, {})
        await log.save_snapshot(2, {})
        assert backend.snapshot_seqs(log) == [2]

    async def test_snapshot_seq_must_be_in_the_log(self, log: EventLog) -> None:
        await log.append([ev()])
        await log.save_snapshot(0, {"empty": True})
        with pytest.raises(ValueError):
            await log.save_snapshot(2, {})
        with pytest.raises(TypeError):
            await log.save_snapshot(1, [1])  # type: ignore[arg-type]
        assert await log.latest_snapshot() == (0, {"empty": True})

    async def test_snapshot_state_is_a_copy(self, log: EventLog) -> None:
        await log.append([ev()])
        state: dict[str, Any] = {"items": [1]}
        await log.save_snapshot(1, state)
        state["items"].append(2)
        snap = await log.latest_snapshot()
        assert snap == (1, {"items": [1]})
        assert snap is not None
        snap[1]["items"].append(3)
        assert await log.latest_snapshot() == (1, {"items": [1]})

    async def test_use_before_open_and_after_close_raises_log_closed(self, backend: Backend, make_log: Maker) -> None:
        unopened = backend.new()
        with pytest.raises(LogClosed):
            await unopened.head()
        log = await make_log()
        await log.append([ev(client_id="c1")])
        await log.save_snapshot(1, {})
        await log.close()
        await log.close()  # idempotent
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: log.append([ev()]),
            lambda: log.append([]),
            lambda: log.read(),
            lambda: log.read_kinds(["user_message"]),
            lambda: log.read_kinds([]),
            lambda: log.read_seqs([1]),
            lambda: log.last_of_kind("user_message"),
            log.head,
            lambda: log.find_client_id("c1"),
            lambda: log.save_snapshot(1, {}),
            log.latest_snapshot,
        ]
        for call in calls:
            with pytest.raises(LogClosed):
                await call()
        # Can be opened again, data intact.
        await log.open()
        await log.open()  # idempotent
        assert await log.head() == 1
        assert await log.find_client_id("c1") == 1

    async def test_reopen_keeps_data(self, make_log: Maker) -> None:
        log = await make_log()
        await log.append([ev(client_id="c1", text="a"), ev("status", s="idle")])
        await log.save_snapshot(2, {"status": "idle"})
        before = await log.read()
        await log.close()

        again = await make_log(reopen=log)
        assert await again.head() == 2
        assert await again.read() == before
        assert await again.find_client_id("c1") == 1
        assert await again.latest_snapshot() == (2, {"status": "idle"})
        last = await again.last_of_kind("status")
        assert last is not None and last.seq == 2
        with pytest.raises(DuplicateClientId):
            await again.append([ev(client_id="c1")])
        assert seqs(await again.append([ev()])) == [3]

    @pytest.mark.parametrize(
        "data",
        [
            {},
            {"nested": {"a": [1, 2, {"b": None, "c": [True, False]}], "d": {"e": {"f": {}}}}, "list": []},
            {"text": "héllo wörld — 你好 — مرحبا — 🎉🧪", "zwj": "👩‍👩‍👧", "nul": "a\x00b", "ctl": "\t\n\r\x1f"},
            {"big": "x" * 1_000_000, "lines": "line\n" * 10_000},
            {"ints": [0, -1, 2**53 + 1, -(2**63), 2**63 - 1], "floats": [0.1, -2.5e-308, 1.7976931348623157e308]},
            {"🔑 ключ": "value", "": "empty key", "z": 1, "a": 2},
        ],
        ids=["empty", "nested", "unicode", "large", "numbers", "keys"],
    )
    async def test_data_round_trips(self, log: EventLog, data: dict[str, Any]) -> None:
        (appended,) = await log.append([NewEvent(kind="tool_result", data=data, client_id="ü-1")])
        assert appended.data == data
        (read,) = await log.read()
        assert read.data == data
        assert read.client_id == "ü-1"
        assert encode_data(read.data) == encode_data(data)

    async def test_events_are_independent_of_later_mutation(self, log: EventLog) -> None:
        data: dict[str, Any] = {"items": [1, 2], "meta": {"k": "v"}}
        (appended,) = await log.append([NewEvent(kind="user_message", data=data)])
        data["items"].append(3)
        data["meta"]["k"] = "changed"
        appended.data["items"].append(4)
        (read,) = await log.read()
        assert read.data == {"items": [1, 2], "meta": {"k": "v"}}
        read.data["items"].clear()
        (again,) = await log.read()
        assert again.data == {"items": [1, 2], "meta": {"k": "v"}}
        last = await log.last_of_kind("user_message")
        assert last is not None and last.data == {"items": [1, 2], "meta": {"k": "v"}}

    async def test_bytes_appended_counts_encoded_data(self, make_log: Maker) -> None:
        log = await make_log()
        batches = [[ev(text="héllo")], [ev("usage", tokens=12), ev(n=[1, 2, 3])]]
        for batch in batches:
            await log.append(batch)
        await log.append([ev(client_id="c")])
        with pytest.raises(DuplicateClientId):
            await log.append([ev(text="not counted", client_id="c")])
        expected = sum(len(encode_data(e.data)) for batch in batches for e in batch)
        expected += len(encode_data({}))
        assert log.bytes_appended == expected  # type: ignore[attr-defined]

    async def test_concurrent_appends_stay_gap_free(self, log: EventLog) -> None:
        async def writer(w: int) -> list[int]:
            got: list[int] = []
            for i in range(10):
                got += seqs(await log.append([ev(w=w, i=i), ev("usage", w=w, i=i)]))
            return got

        results = await asyncio.gather(*(writer(w) for w in range(8)))
        assert sorted(itertools.chain(*results)) == list(range(1, 161))
        for got in results:
            assert got == sorted(got)
        assert seqs(await log.read()) == list(range(1, 161))


# -- property test: any sequence of batches behaves like a list ------------------------------------

CLIENT_IDS = ["c0", "c1", "c2", "c3", "c4"]
KINDS = ["user_message", "assistant_message", "usage"]

json_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)
json_value = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
new_event = st.builds(
    NewEvent,
    kind=st.sampled_from(KINDS),
    data=st.dictionaries(st.text(max_size=4), json_value, max_size=3),
    client_id=st.none() | st.sampled_from(CLIENT_IDS),
)
operation = st.lists(new_event, max_size=4) | st.just("reopen")


async def _run_against_model(backend: Backend, ops: list[list[NewEvent] | str]) -> None:
    model: list[NewEvent] = []  # model[seq - 1]
    log = backend.new()
    await log.open()
    try:
        for op in ops:
            if op == "reopen":
                await log.close()
                log = backend.reopen(log)
                await log.open()
                continue
            assert isinstance(op, list)
            ids = [e.client_id for e in op if e.client_id is not None]
            known = {e.client_id: seq for seq, e in enumerate(model, start=1) if e.client_id is not None}
            if len(ids) != len(set(ids)):
                with pytest.raises(ValueError):
                    await log.append(op)
            elif any(cid in known for cid in ids):
                first = next(cid for cid in ids if cid in known)
                with pytest.raises(DuplicateClientId) as info:
                    await log.append(op)
                assert (info.value.client_id, info.value.seq) == (first, known[first])
            else:
                got = await log.append(op)
                assert seqs(got) == list(range(len(model) + 1, len(model) + len(op) + 1))
                model += op
            assert await log.head() == len(model)

        stored = await log.read()
        assert seqs(stored) == list(range(1, len(model) + 1))  # gap-free
        assert [(e.kind, e.data, e.client_id) for e in stored] == [(e.kind, e.data, e.client_id) for e in model]
        for kind in KINDS:
            expected = [seq for seq, e in enumerate(model, start=1) if e.kind == kind]
            assert seqs(await log.read_kinds([kind])) == expected
            last = await log.last_of_kind(kind)
            assert (last.seq if last else None) == (expected[-1] if expected else None)
        for cid in CLIENT_IDS:
            expected_seq = next((seq for seq, e in enumerate(model, start=1) if e.client_id == cid), None)
            assert await log.find_client_id(cid) == expected_seq
        mid = len(model) // 2
        assert seqs(await log.read(after=mid, limit=2)) == list(range(mid + 1, len(model) + 1))[:2]
    finally:
        await log.close()


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operation, max_size=8))
def test_any_batches_behave_like_a_list(backend: Backend, ops: list[list[NewEvent] | str]) -> None:
    asyncio.run(_run_against_model(backend, ops))
