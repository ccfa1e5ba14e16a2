"""Hibernation with a real host, real SQLite files and real tool subprocesses.

An agent that idles past `idle_timeout` hibernates: its actor returns (`handle.actor is None`,
phase `hibernated`), a snapshot is written, and its log is closed (the process holds no file
descriptor to its database any more). The next message wakes it with its whole state: the
counters and the conversation are what they were, the new message gets the next seq. The state
rebuilt from a snapshot plus the events after it equals the state rebuilt from a full replay, for
the snapshots the runtime wrote and for a snapshot taken after any prefix of the real log.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers.logcheck import assert_gap_free, fds_open_to, last_status, read_events, read_snapshots  # noqa: E402

from agent_runtime.agent.actor import ActorConfig, AgentActor  # noqa: E402
from agent_runtime.eventlog.sqlite import SqliteEventLog  # noqa: E402
from agent_runtime.events import Event, encode_data  # noqa: E402
from agent_runtime.host import AgentHandle, Host, HostConfig  # noqa: E402
from agent_runtime.manifest import make_manifest  # noqa: E402
from agent_runtime.providers.simulated import SimulatedModelConfig, SimulatedProvider  # noqa: E402
from agent_runtime.agent.state import CONVERSATION_KINDS, AgentState  # noqa: E402
from agent_runtime.tools.registry import default_registry  # noqa: E402

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]

IDLE_S = 0.3
KEY = "default/sleeper"


def host_config(data_dir: Path, snapshot_every: int = 200) -> HostConfig:
    return HostConfig(data_dir=data_dir, actor=ActorConfig(idle_timeout_s=IDLE_S, snapshot_every=snapshot_every),
                      max_running_tools=4)


def provider() -> SimulatedProvider:
    return SimulatedProvider(SimulatedModelConfig(seed=11, run_probability=1.0))


async def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


def hibernated_after_turns(handle: AgentHandle, turns: int) -> bool:
    return handle.actor is None and handle.summary.get("turns") == turns


def events_on_disk(db: Path) -> list[Event]:
    return [Event(r.seq, r.kind, r.data, r.ts, r.client_id) for r in read_events(db)]


def rebuild(events: list[Event], snapshot: tuple[int, dict[str, Any]] | None) -> AgentState:
    """What `AgentActor.start` does, from rows read off the disk."""
    snap_seq = snapshot[0] if snapshot else 0
    refs = AgentState.conversation_refs(snapshot[1]) if snapshot else None
    if refs is not None:
        message_events = [e for e in events if e.seq in set(refs)]
    else:
        message_events = [e for e in events if e.kind in CONVERSATION_KINDS and e.seq <= snap_seq]
    return AgentState.restore(snapshot, message_events, [e for e in events if e.seq > snap_seq])


def same_state(a: AgentState, b: AgentState) -> bool:
    return (a.snapshot() == b.snapshot() and a.messages == b.messages and a.pending == b.pending
            and a.open_call_ids == b.open_call_ids and a.context_tokens == b.context_tokens
            and getattr(a, "started_call_ids", None) == getattr(b, "started_call_ids", None))


class Recorder:
    """A hub subscriber (what an attached client is to the hub)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def offer_event(self, event: Event) -> bool:
        self.events.append(event)
        return True

    def offer_delta(self, message_id: str, text: str, offset: int) -> bool:
        return True

    def overflowed(self) -> None:  # pragma: no cover - never full
        raise AssertionError("recorder overflowed")


async def test_hibernate_then_wake_with_full_state(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with Host(host_config(data_dir), provider(), default_registry()) as host:
        handle, created = await host.apply(make_manifest("sleeper", limits={"maxTurns": 12}))
        assert created
        db = handle.folder / "events.db"

        # Turn 1: a coding task (real tools), and a second message while it runs (deferred).
        seq1, dup = await host.user_message(KEY, "m1", "task: write fib.py and check that it works")
        actor = handle.actor
        assert isinstance(actor, AgentActor) and (seq1, dup) == (1, False)
        seq2, _ = await host.user_message(KEY, "m2", "What is in the workspace now?")
        assert actor.state.running, "the second message should have arrived during the turn"
        await wait_until(lambda: hibernated_after_turns(handle, 1), 20, "hibernation after turn 1")

        # Hibernated: no actor, phase hibernated, the actor returned, its log is closed.
        assert handle.actor is None and handle.phase() == "hibernated"
        assert host.counts_by_phase() == {"running": 0, "idle": 0, "hibernated": 1}
        assert isinstance(actor.log, SqliteEventLog)
        assert actor.closing and actor.closed.is_set() and not actor.log.is_open
        assert fds_open_to(str(db)) == [], "the hibernated agent still holds its database open"
        turns, messages, counters = actor.state.turns, list(actor.state.messages), actor.state.snapshot()
        assert turns == 1 and not actor.state.running and len(messages) >= 6
        assert [m for m in messages if getattr(m, "text", None) == "What is in the workspace now?"], \
            "the deferred message did not join the conversation"

        # On disk: a gap-free log that ends idle, and a snapshot of the state at its head.
        rows = read_events(db)
        assert_gap_free(rows, KEY)
        assert last_status(rows) == {"state": "idle", "reason": "end_turn"}
        snapshots = read_snapshots(db)
        assert snapshots, "no snapshot was written on hibernation"
        assert snapshots[-1][0] == len(rows) == counters["seq"]
        assert snapshots[-1][1] == orjson.loads(orjson.dumps(counters))

        # Snapshot + tail == full replay == the state the actor had.
        events = events_on_disk(db)
        from_snapshot = rebuild(events, snapshots[-1])
        full = rebuild(events, None)
        assert same_state(from_snapshot, full)
        assert from_snapshot.snapshot() == counters and from_snapshot.messages == messages

        # The next message wakes it with everything intact, at the next seq.
        seq3, dup = await host.user_message(KEY, "m3", "task: write primes.py and check that it works")
        woken = handle.actor
        assert woken is not None and woken is not actor and handle.wakes == 2
        assert (seq3, dup) == (len(rows) + 1, False)
        assert woken.state.turns == turns
        assert woken.state.messages[: len(messages)] == messages and len(woken.state.messages) >= len(messages) + 1
        # The same id again is a duplicate at its original seq, even across the hibernation.
        assert await host.user_message(KEY, "m1", "again") == (seq1, True)
        assert await host.user_message(KEY, "m2", "again") == (seq2, True)

        await wait_until(lambda: hibernated_after_turns(handle, 2), 20, "hibernation after turn 2")
        assert isinstance(woken.log, SqliteEventLog)
        assert not woken.log.is_open and fds_open_to(str(db)) == []
        rows2 = read_events(db)
        assert_gap_free(rows2, KEY)
        assert rows2[: len(rows)] == rows
        assert [r.client_id for r in rows2 if r.kind == "user_message"] == ["m1", "m2", "m3"]
        assert read_snapshots(db)[-1][0] == len(rows2)
        assert same_state(rebuild(events_on_disk(db), read_snapshots(db)[-1]), rebuild(events_on_disk(db), None))

    # A new host (a restart after a clean stop) boots it without waking it; a read wakes it whole.
    async with Host(host_config(data_dir), provider(), default_registry()) as host:
        assert await host.boot() == 0
        handle = host.get(KEY)
        assert handle.actor is None and handle.phase() == "hibernated"
        assert len(await host.read_events(KEY, 0)) == len(rows2)
        assert handle.actor is not None and handle.actor.state.turns == 2
        assert same_state(handle.actor.state, rebuild(events_on_disk(db), None))


async def test_snapshot_plus_tail_equals_full_replay(tmp_path: Path) -> None:
    """Frequent snapshots (every 5 events) land mid-turn: with open tool calls, with a deferred
    message pending. Each one the runtime wrote, and a snapshot after every prefix of the real log,
    rebuilds the same state as replaying everything."""
    data_dir = tmp_path / "data"
    async with Host(host_config(data_dir, snapshot_every=5), provider(), default_registry()) as host:
        handle, _ = await host.apply(make_manifest("sleeper"))
        db = handle.folder / "events.db"
        await host.user_message(KEY, "a", "task: write sort.py and check that it works")
        await host.user_message(KEY, "b", "task: write wordcount.py too")
        await wait_until(lambda: hibernated_after_turns(handle, 1), 20, "hibernation")
        await host.user_message(KEY, "c", "What is in the workspace now?")
        await wait_until(lambda: hibernated_after_turns(handle, 2), 20, "hibernation")

    events = events_on_disk(db)
    assert len(events) > 20
    full = rebuild(events, None)
    assert full.turns == 2 and not full.running
    written = read_snapshots(db)
    assert written and written[-1][0] == len(events)
    for snap in written:
        assert same_state(rebuild(events, snap), full), f"snapshot at seq {snap[0]}"
    mid_turn = 0
    for p in range(1, len(events) + 1):
        prefix = rebuild(events[:p], None)
        mid_turn += bool(prefix.open_call_ids or prefix.pending)
        snap = (p, orjson.loads(orjson.dumps(prefix.snapshot())))  # as stored
        assert same_state(rebuild(events[:p], snap), prefix), f"prefix {p}: snapshot at the head"
        assert same_state(rebuild(events, snap), full), f"snapshot at seq {p} + tail != full replay"
    assert mid_turn > 0, "no prefix ended with open tool calls or a pending message"


async def test_a_wake_reads_what_the_snapshot_names_not_the_whole_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With compression the conversation is bounded, and so is a wake: it reads the snapshot, the
    events the snapshot names (frozen chunks, live and pending messages) and the events after it —
    never a replay of the log — and the woken state is the state a full replay gives."""
    data_dir = tmp_path / "data"
    manifest = make_manifest("sleeper", compression={"tailBudget": 600, "keepTail": 200, "frozenBudget": 1024})
    async with Host(host_config(data_dir), provider(), default_registry()) as host:
        handle, _ = await host.apply(manifest)
        db = handle.folder / "events.db"
        for turn in range(1, 9):
            await host.user_message(KEY, f"m{turn}", f"task {turn}: write fib.py and check that it works")
            await wait_until(lambda turn=turn: hibernated_after_turns(handle, turn), 20, f"hibernation after turn {turn}")
        events = events_on_disk(db)
        assert sum(e.kind == "compression" for e in events) >= 3
        snapshot = read_snapshots(db)[-1]
        refs = AgentState.conversation_refs(snapshot[1])
        assert refs is not None and len(refs) < len(events) // 3

        replays: list[int] = []
        read_seqs = SqliteEventLog.read_seqs

        async def no_replay(self: SqliteEventLog, kinds: Any, after: int = 0) -> list[Event]:
            raise AssertionError("a wake replayed the log")

        async def counted(self: SqliteEventLog, seqs: Any) -> list[Event]:
            out = await read_seqs(self, seqs)
            replays.append(len(out))
            return out

        monkeypatch.setattr(SqliteEventLog, "read_kinds", no_replay)
        monkeypatch.setattr(SqliteEventLog, "read_seqs", counted)
        woken = await host.wake(KEY)
        assert replays == [len(set(refs))]
        assert same_state(woken.state, rebuild(events, None))
        monkeypatch.undo()
        await host.user_message(KEY, "m9", "task 9: write primes.py and check that it works")
        await wait_until(lambda: hibernated_after_turns(handle, 9), 20, "hibernation after turn 9")
    assert_gap_free(read_events(db), KEY)


async def test_attached_client_keeps_agent_awake(tmp_path: Path) -> None:
    async with Host(host_config(tmp_path / "data"), provider(), default_registry()) as host:
        handle, _ = await host.apply(make_manifest("sleeper", tools=["list_dir"]))
        rec = Recorder()
        host.subscribe(KEY, rec)
        await host.user_message(KEY, "x", "hello")
        await wait_until(lambda: any(e.kind == "status" and e.data["state"] == "idle" for e in rec.events), 10, "idle")
        await asyncio.sleep(IDLE_S * 4)
        assert handle.actor is not None and handle.phase() == "idle", "hibernated with a client attached"
        host.unsubscribe(KEY, rec)
        await wait_until(lambda: handle.actor is None, IDLE_S * 10, "hibernation after the client left")
        assert [e.seq for e in rec.events] == list(range(1, len(rec.events) + 1))


async def test_the_retry_budget_survives_hibernation(tmp_path: Path) -> None:
    # The budget bounds an agent's retries over time (a provider outage must not get
    # retry_budget retries per wake): it lives on the host's handle, not on the actor.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from _scripted import Fail, ScriptedProvider

    from agent_runtime.providers.base import ProviderError

    failing = ScriptedProvider(lambda request, n: [Fail(ProviderError("overloaded", retryable=True, code="overloaded"))])
    config = HostConfig(data_dir=tmp_path / "data", actor=ActorConfig(
        idle_timeout_s=IDLE_S, model_retries=5, retry_base_s=0.001, retry_budget=2, retry_budget_refill_per_s=0.0))
    async with Host(config, failing, default_registry()) as host:
        handle, _ = await host.apply(make_manifest("sleeper"))
        await host.user_message(KEY, "m1", "first")
        await wait_until(lambda: hibernated_after_turns(handle, 1), 20, "hibernation after turn 1")
        assert failing.calls == 3  # the first try and the 2 retries of the budget
        await host.user_message(KEY, "m2", "second")
        await wait_until(lambda: hibernated_after_turns(handle, 2), 20, "hibernation after turn 2")
    assert handle.wakes == 2
    assert failing.calls == 4  # no retry left after the wake
    errors = [e.data for e in events_on_disk(tmp_path / "data" / "agents" / "default" / "sleeper" / "events.db")
              if e.kind == "error"]
    assert len(errors) == 2 and "retry budget of the agent exhausted" in errors[1]["message"]


async def test_a_snapshot_naming_events_the_log_lacks_falls_back_to_a_replay(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir = tmp_path / "data"
    async with Host(host_config(data_dir), provider(), default_registry()) as host:
        handle, _ = await host.apply(make_manifest("sleeper"))
        db = handle.folder / "events.db"
        await host.user_message(KEY, "m1", "task: write fib.py and check that it works")
        await wait_until(lambda: hibernated_after_turns(handle, 1), 20, "hibernation after turn 1")
        seq, snap = read_snapshots(db)[-1]
        snap["conversation"]["live"].append(10_000)  # names an event the log does not have
        with sqlite3.connect(db) as conn:  # the agent is hibernated: nothing else has the file open
            conn.execute("UPDATE snapshots SET state = ? WHERE seq = ?", (encode_data(snap), seq))
        woken = await host.wake(KEY)
        assert same_state(woken.state, rebuild(events_on_disk(db), None))
        assert "unusable" in caplog.text
