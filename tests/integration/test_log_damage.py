"""A damaged SQLite log, at the event-log level, with real files: which errors are corruption, how
`SqliteEventLog` reports it (`LogCorrupt`, `on_corrupt` once, every later call refused and nothing
written), and what `eventlog.salvage.recover_log` keeps of it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import pytest_asyncio

from agent_runtime.eventlog.base import LogCorrupt
from agent_runtime.eventlog.damage import is_corruption
from agent_runtime.eventlog.executor import SqliteExecutor
from agent_runtime.eventlog.salvage import recover_log
from agent_runtime.eventlog.sqlite import SqliteEventLog
from agent_runtime.events import NewEvent

pytestmark = pytest.mark.asyncio

N = 1500


@pytest_asyncio.fixture
async def executor() -> AsyncIterator[SqliteExecutor]:
    async with SqliteExecutor() as ex:
        yield ex


async def make_log(path: Path, executor: SqliteExecutor, n: int = N) -> None:
    log = SqliteEventLog(path, executor)
    await log.open()
    for i in range(0, n, 50):
        await log.append([NewEvent("user_message", {"text": f"message {i + j} " + "y" * 200}) for j in range(50)])
    await log.close()


def damage_middle_page(db: Path) -> None:
    """Flip every byte of the page in the middle of the file (a leaf of the events table)."""
    size = db.stat().st_size
    page = 4096
    offset = (size // page // 2) * page
    with open(db, "r+b") as f:
        f.seek(offset)
        data = f.read(page)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))


def rows(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT seq, kind, data, ts, client_id, schema FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


async def test_only_damage_is_corruption(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(sqlite3.DatabaseError) as notadb:
        sqlite3.connect(garbage).execute("SELECT * FROM sqlite_master").fetchall()
    assert is_corruption(notadb.value)
    full = sqlite3.connect(tmp_path / "full.db")
    full.execute("CREATE TABLE t (x BLOB)")
    full.execute("PRAGMA max_page_count = 3")
    with pytest.raises(sqlite3.OperationalError) as disk_full:
        full.execute("INSERT INTO t VALUES (zeroblob(100000))")
    assert "full" in str(disk_full.value) and not is_corruption(disk_full.value)
    assert not is_corruption(sqlite3.OperationalError("database is locked"))
    assert not is_corruption(ValueError("database disk image is malformed"))


async def test_damage_met_by_a_read_is_log_corrupt_and_the_log_refuses_writes(
        tmp_path: Path, executor: SqliteExecutor) -> None:
    db = tmp_path / "events.db"
    await make_log(db, executor)
    damage_middle_page(db)
    told: list[LogCorrupt] = []
    log = SqliteEventLog(db, executor, on_corrupt=told.append, quick_check_max_bytes=0)  # no check at open
    await log.open()
    assert await log.head() == N  # the rightmost path is intact
    with pytest.raises(LogCorrupt) as exc:
        await log.read(after=0)
    assert exc.value.code == "log_corrupt" and "malformed" in str(exc.value)
    assert told == [exc.value]
    before = db.read_bytes()
    for call in (log.append([NewEvent("user_message", {"text": "more"})]), log.save_snapshot(1, {}), log.head()):
        with pytest.raises(LogCorrupt):
            await call
    await log.close()
    assert db.read_bytes() == before and len(told) == 1


async def test_quick_check_at_open_finds_damage_no_read_would(tmp_path: Path, executor: SqliteExecutor) -> None:
    db = tmp_path / "events.db"
    await make_log(db, executor)
    damage_middle_page(db)
    told: list[LogCorrupt] = []
    log = SqliteEventLog(db, executor, on_corrupt=told.append)  # the file is under QUICK_CHECK_MAX_BYTES
    with pytest.raises(LogCorrupt, match="quick_check"):
        await log.open()
    assert len(told) == 1 and not log.is_open
    with pytest.raises(LogCorrupt):
        await log.open()  # refused without touching the file again


async def test_salvage_keeps_the_events_before_the_damage_and_the_old_file(
        tmp_path: Path, executor: SqliteExecutor) -> None:
    db = tmp_path / "events.db"
    await make_log(db, executor)
    original = rows(db)
    damage_middle_page(db)
    damaged = db.read_bytes()
    report = recover_log(db, datetime(2026, 12, 7, 22, 0, tzinfo=timezone.utc))
    assert 0 < report.salvaged < N and report.old_head == N and report.lost == N - report.salvaged
    assert report.kept_as == "events.db.corrupt-20261207T220000Z"
    assert (tmp_path / report.kept_as).read_bytes() == damaged
    assert rows(db) == original[: report.salvaged]
    assert not list(tmp_path.glob(".recover-*"))
    log = SqliteEventLog(db, executor)  # the runtime opens it (quick_check included) and goes on from there
    await log.open()
    assert [e.seq for e in await log.read()] == list(range(1, report.salvaged + 1))
    [new] = await log.append([NewEvent("user_message", {"text": "after"})])
    assert new.seq == report.salvaged + 1
    await log.close()


async def test_salvage_of_a_file_that_is_no_database_gives_an_empty_log(
        tmp_path: Path, executor: SqliteExecutor) -> None:
    db = tmp_path / "events.db"
    db.write_bytes(os.urandom(20000))
    report = recover_log(db, datetime.now(timezone.utc))
    assert (report.salvaged, report.old_head, report.lost) == (0, None, None)
    assert "not a database" in report.stopped
    log = SqliteEventLog(db, executor)
    await log.open()
    assert await log.head() == 0
    await log.close()


class Watcher:
    """A hub subscriber that records `agent_failed` (what a WebSocket connection does with it)."""

    def __init__(self) -> None:
        self.failed: list[LogCorrupt] = []

    def offer_event(self, event: object) -> bool:
        return True

    def offer_delta(self, message_id: str, text: str, offset: int) -> bool:
        return True

    def overflowed(self) -> None:
        pass

    def agent_failed(self, exc: LogCorrupt) -> None:
        self.failed.append(exc)


async def test_the_host_quarantines_the_damaged_agent_only_and_tells_its_subscribers(tmp_path: Path) -> None:
    from agent_runtime.agent.actor import ActorConfig
    from agent_runtime.host import Host, HostConfig
    from agent_runtime.manifest import make_manifest
    from agent_runtime.providers.simulated import SimulatedProvider
    from agent_runtime.tools.registry import default_registry

    config = HostConfig(data_dir=tmp_path, actor=ActorConfig(idle_timeout_s=0.2))
    async with Host(config, SimulatedProvider(), default_registry()) as host:
        for name in ("victim", "bystander"):
            await host.apply(make_manifest(name))
            await host.user_message(f"default/{name}", f"{name}-1", "hello " + "z" * 3000)
        handle = host.get("default/victim")
        for _ in range(300):
            if all(h.actor is None for h in host.handles.values()):
                break
            await asyncio.sleep(0.05)
        assert handle.phase() == "hibernated"
        watcher = Watcher()
        host.subscribe("default/victim", watcher)
        db = handle.folder / "events.db"
        with open(db, "r+b") as f:  # page 1 (the header and schema) stays; page 3 (events' root) goes
            f.seek(2 * 4096)
            f.write(os.urandom(4096))
        with pytest.raises(LogCorrupt):
            await host.read_events("default/victim", 0)
        assert handle.phase() == "failed" and host.describe(handle)["reason"] == "corrupt"
        assert len(watcher.failed) == 1 and watcher.failed[0].code == "log_corrupt"
        for request in (host.user_message("default/victim", "v-2", "again"), host.head("default/victim"),
                        host.interrupt("default/victim")):
            with pytest.raises(LogCorrupt):
                await request
        with pytest.raises(LogCorrupt):
            handle.refuse_if_failed()
        seq, duplicate = await host.user_message("default/bystander", "b-2", "still here?")
        assert seq > 1 and not duplicate
        assert host.counts_by_phase()["failed"] == 1
        assert host.gauges()['agent_runtime_agents{phase="failed"}'] == 1
