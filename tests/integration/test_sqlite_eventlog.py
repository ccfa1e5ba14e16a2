"""SQLite-specific behaviour of the event log: kill -9 durability, the thread model, the file.

The backend-independent contract is in `tests/unit/test_eventlog_contract.py` (which also runs on
SQLite); this file checks what only a real file and real processes show.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from agent_runtime.eventlog.base import EventLogError
from agent_runtime.eventlog.executor import ExecutorClosed, SqliteExecutor
from agent_runtime.eventlog.sqlite import LOG_SCHEMA_VERSION, SqliteEventLog
from agent_runtime.events import SCHEMA_VERSION, NewEvent, encode_data

pytestmark = pytest.mark.asyncio


@pytest.fixture
def executor() -> Iterator[SqliteExecutor]:
    with SqliteExecutor(max_workers=2) as ex:
        yield ex


@pytest_asyncio.fixture
async def log(tmp_path: Path, executor: SqliteExecutor) -> AsyncIterator[SqliteEventLog]:
    log = SqliteEventLog(tmp_path / "agent.sqlite", executor)
    await log.open()
    yield log
    await log.close()


def ev(kind: str = "user_message", client_id: str | None = None, **data: object) -> NewEvent:
    return NewEvent(kind=kind, data=dict(data), client_id=client_id)


def raw_connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# -- (a) kill -9 durability -----------------------------------------------------------------------

WRITER = r"""
import asyncio, sys
from pathlib import Path
from agent_runtime.eventlog.executor import SqliteExecutor
from agent_runtime.eventlog.sqlite import SqliteEventLog
from agent_runtime.events import NewEvent

async def main(path: str, run: str) -> None:
    async with SqliteExecutor(max_workers=2) as ex:
        log = SqliteEventLog(Path(path), ex)
        await log.open()
        i = 0
        while True:
            i += 1
            batch = [NewEvent("user_message", {"run": run, "i": i, "pad": "x" * 300}, client_id=f"{run}-{i}")]
            if i % 3 == 0:
                batch.append(NewEvent("usage", {"run": run, "i": i}))
            events = await log.append(batch)
            # Acknowledge only after append returned, i.e. after COMMIT.
            sys.stdout.write(" ".join(f"{e.seq}:{e.client_id or ''}" for e in events) + "\n")
            sys.stdout.flush()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def _run_writer_and_kill(path: Path, run: str, acks_before_kill: int) -> dict[int, str]:
    """Start a writer process, let it acknowledge some appends, SIGKILL it mid-loop.

    Returns every acknowledged seq (with its client id, '' for none), including lines it managed to
    print between our decision to kill and its death.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), run,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    acked: dict[int, str] = {}

    def take(line: bytes) -> None:
        for item in line.decode().split():
            seq, _, client_id = item.partition(":")
            acked[int(seq)] = client_id

    killed = False
    try:
        lines = 0
        while lines < acks_before_kill:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
            if not line:
                err = await proc.stderr.read()
                pytest.fail(f"writer exited early (rc={await proc.wait()}): {err.decode()[-2000:]}")
            take(line)
            lines += 1
        # os.kill, not proc.send_signal/kill: Popen.send_signal() polls (waitpid) first, which can
        # reap the child under asyncio's child watcher and turn the exit status into 255.
        os.kill(proc.pid, signal.SIGKILL)
        killed = True
        rest = await proc.stdout.read()
        for line in rest.splitlines(keepends=True):
            if line.endswith(b"\n"):  # a torn last line was never a complete acknowledgement
                take(line)
    finally:
        if not killed and proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        await proc.stderr.read()
    assert proc.returncode == -signal.SIGKILL
    return acked


async def test_acknowledged_appends_survive_kill_9(tmp_path: Path, executor: SqliteExecutor) -> None:
    path = tmp_path / "agent.sqlite"
    rng = random.Random(1234)
    all_acked: dict[int, str] = {}
    for run in ("r1", "r2", "r3"):  # each run also restarts on the file the previous kill left
        acked = await _run_writer_and_kill(path, run, acks_before_kill=rng.randint(50, 250))
        assert acked, "the writer acknowledged nothing"
        assert Path(f"{path}-wal").exists(), "the kill should leave a WAL for recovery"
        all_acked.update(acked)

        log = SqliteEventLog(path, executor)
        await log.open()
        try:
            head = await log.head()
            events = await log.read()
            assert [e.seq for e in events] == list(range(1, head + 1))  # gap-free
            assert head >= max(all_acked)
            by_seq = {e.seq: e for e in events}
            for seq, client_id in all_acked.items():
                assert seq in by_seq, f"acknowledged seq {seq} lost"
                assert (by_seq[seq].client_id or "") == client_id
            for e in events:  # and the content is intact
                if e.kind == "user_message":
                    assert e.client_id == f"{e.data['run']}-{e.data['i']}"
                    assert e.data["pad"] == "x" * 300
        finally:
            await log.close()


# -- (b) the thread count does not grow with the number of agents ----------------------------------


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


async def test_thread_count_does_not_grow_with_agents(tmp_path: Path) -> None:
    n = 1000
    threads_before, tasks_before = threading.active_count(), _os_threads()
    async with SqliteExecutor(max_workers=2) as executor:
        logs = [SqliteEventLog(tmp_path / f"agent-{i:04d}.sqlite", executor) for i in range(n)]
        await asyncio.gather(*(log.open() for log in logs))

        async def use(i: int, log: SqliteEventLog) -> None:
            await log.append([ev(client_id=f"c{i}", text=f"hello {i}"), ev("assistant_message", text="hi")])
            await log.append([ev("usage", tokens=i)])
            await log.save_snapshot(2, {"agent": i})
            assert await log.head() == 3
            assert [e.seq for e in await log.read()] == [1, 2, 3]
            assert await log.find_client_id(f"c{i}") == 1

        try:
            await asyncio.gather(*(use(i, log) for i, log in enumerate(logs)))
            # All 1,000 logs are open at this point.
            assert all(log.is_open for log in logs)
            threads_during, tasks_during = threading.active_count(), _os_threads()
        finally:
            await asyncio.gather(*(log.close() for log in logs))
    assert threads_during <= threads_before + 2, (threads_before, threads_during)
    assert tasks_during <= tasks_before + 2, (tasks_before, tasks_during)
    assert threading.active_count() <= threads_before  # the pool's threads were joined
    assert not any(log.is_open for log in logs)


# -- (c) concurrency on one log ---------------------------------------------------------------------


async def test_concurrent_appends_to_one_log_are_gap_free_and_ordered(tmp_path: Path, executor: SqliteExecutor) -> None:
    path = tmp_path / "agent.sqlite"
    log = SqliteEventLog(path, executor)
    await log.open()
    rng = random.Random(7)
    sizes = {t: [rng.randint(1, 4) for _ in range(15)] for t in range(40)}

    async def writer(t: int) -> list[int]:
        got: list[int] = []
        for j, size in enumerate(sizes[t]):
            batch = [ev("tool_call", t=t, j=j, k=k) for k in range(size)]
            events = await log.append(batch)
            assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + size))  # contiguous
            got += [e.seq for e in events]
        return got

    async def reader() -> None:
        for _ in range(30):
            events = await log.read()
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            await asyncio.sleep(0)

    try:
        per_writer, _ = await asyncio.gather(
            asyncio.gather(*(writer(t) for t in range(40))), asyncio.gather(reader(), reader())
        )
        total = sum(sum(s) for s in sizes.values())
        assert sorted(seq for got in per_writer for seq in got) == list(range(1, total + 1))
        for got in per_writer:
            assert got == sorted(got)  # each task's appends are ordered
        events = await log.read()
        assert [e.seq for e in events] == list(range(1, total + 1))
        for t in range(40):  # a task's events appear in the order it appended them
            mine = [(e.data["j"], e.data["k"]) for e in events if e.data["t"] == t]
            assert mine == sorted(mine) and len(mine) == sum(sizes[t])
        assert log.bytes_appended == sum(len(encode_data(e.data)) for e in events)
        ts = [e.ts for e in events]
        assert ts == sorted(ts)  # the clock is read under the write lock
    finally:
        await log.close()


async def test_cancelled_calls_never_share_the_connection(tmp_path: Path, executor: SqliteExecutor) -> None:
    log = SqliteEventLog(tmp_path / "agent.sqlite", executor)
    await log.open()
    try:
        tasks = [asyncio.create_task(log.append([ev(i=i, pad="y" * 5000)])) for i in range(200)]
        await asyncio.sleep(0)
        for task in tasks[::3]:
            task.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        acked = {e.seq for r in done if isinstance(r, list) for e in r}
        head = await log.head()
        events = await log.read()
        # A cancelled append may or may not have committed, but nothing is torn or out of order.
        assert [e.seq for e in events] == list(range(1, head + 1))
        assert acked <= {e.seq for e in events}
        assert len({e.data["i"] for e in events}) == head
        assert [e.seq for e in await log.append([ev()])] == [head + 1]
    finally:
        await log.close()


# -- the file ------------------------------------------------------------------------------------------


async def test_file_layout_and_pragmas(log: SqliteEventLog) -> None:
    await log.append([ev(client_id="c1", text="é"), ev("usage", n=1)])
    await log.save_snapshot(2, {"s": 1})
    assert log._conn is not None  # peek at the log's own connection (no call is in flight)
    assert log._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert log._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000

    conn = raw_connect(log.path)
    try:
        cols = {r[1]: (r[2], r[3], r[5]) for r in conn.execute("PRAGMA table_info(events)")}
        assert cols == {
            "seq": ("INTEGER", 0, 1),
            "kind": ("TEXT", 1, 0),
            "data": ("BLOB", 1, 0),
            "ts": ("REAL", 1, 0),
            "client_id": ("TEXT", 0, 0),
            "schema": ("INTEGER", 1, 0),
        }
        indexes = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
        assert "UNIQUE" in indexes["events_client_id"] and "WHERE client_id IS NOT NULL" in indexes["events_client_id"]
        assert "events_kind_seq" not in indexes  # each index costs a page write per commit
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == LOG_SCHEMA_VERSION
        rows = conn.execute(
            "SELECT seq, kind, data, typeof(data), client_id, schema FROM events ORDER BY seq"
        ).fetchall()
        assert rows == [
            (1, "user_message", encode_data({"text": "é"}), "blob", "c1", SCHEMA_VERSION),
            (2, "usage", encode_data({"n": 1}), "blob", None, SCHEMA_VERSION),
        ]
        assert conn.execute("SELECT seq, state FROM snapshots").fetchall() == [(2, encode_data({"s": 1}))]
    finally:
        conn.close()


async def test_synchronous_full_is_an_option(tmp_path: Path, executor: SqliteExecutor) -> None:
    with pytest.raises(ValueError):
        SqliteEventLog(tmp_path / "x.sqlite", executor, synchronous="OFF")
    log = SqliteEventLog(tmp_path / "agent.sqlite", executor, synchronous="FULL")
    await log.open()
    try:
        assert log._conn is not None
        assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert [e.seq for e in await log.append([ev(), ev()])] == [1, 2]
    finally:
        await log.close()


@pytest.mark.parametrize(
    ("sql", "params", "index"),
    [
        ("SELECT seq FROM events WHERE client_id = ?", ("c",), "events_client_id"),
        ("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (0, 10), "INTEGER PRIMARY KEY"),
    ],
    ids=["find_client_id", "read"],
)
async def test_reads_use_the_indexes(log: SqliteEventLog, sql: str, params: tuple[object, ...], index: str) -> None:
    conn = raw_connect(log.path)
    try:
        plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    finally:
        conn.close()
    assert index in plan and "SCAN events" not in plan.replace("SCAN events USING", "")


async def test_every_sqlite_call_runs_on_the_shard_executor(log: SqliteEventLog) -> None:
    seen: set[str] = set()
    assert log._conn is not None
    log._conn.set_trace_callback(lambda _sql: seen.add(threading.current_thread().name))
    try:
        await log.append([ev(client_id="x")])
        await log.read()
        await log.read_kinds(["user_message"])
        await log.last_of_kind("user_message")
        await log.find_client_id("x")
        await log.save_snapshot(1, {})
        await log.latest_snapshot()
        await log.head()
    finally:
        await log._locked(lambda: log._conn.set_trace_callback(None) if log._conn else None)
    assert seen and all(name.startswith("sqlite") for name in seen), seen


async def test_refuses_a_newer_file_schema(tmp_path: Path, executor: SqliteExecutor) -> None:
    path = tmp_path / "agent.sqlite"
    log = SqliteEventLog(path, executor)
    await log.open()
    await log.close()
    conn = raw_connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (LOG_SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(EventLogError):
        await log.open()
    assert not log.is_open


async def test_close_after_executor_shutdown(tmp_path: Path) -> None:
    executor = SqliteExecutor(max_workers=1)
    log = SqliteEventLog(tmp_path / "agent.sqlite", executor)
    await log.open()
    await log.append([ev()])
    executor.close()
    with pytest.raises(ExecutorClosed):
        await log.head()
    await log.close()  # still releases the connection
    assert not log.is_open


async def test_last_of_kind_walks_back_from_the_newest_event_without_sorting(log: SqliteEventLog) -> None:
    conn = raw_connect(log.path)
    try:
        plan = " | ".join(
            r[3] for r in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM events WHERE kind = ? ORDER BY seq DESC LIMIT 1", ("x",))
        )
    finally:
        conn.close()
    assert "TEMP B-TREE" not in plan, plan
