"""A thousand agents in one process: threads and file descriptors do not grow with the agents.

One host, 1,000 agents, one coding turn each on the instant simulated model with the real tools
(`shell` spawns real subprocesses; at most `max_running_tools` run at once). All turns finish.
Threads are sampled throughout: after a warm-up turn (which starts the lazily created SQLite pool
threads) the count never exceeds the baseline plus the fixed pool size. After the agents hibernate
(short idle timeout) their logs are closed, so the open file descriptors return to the baseline,
and no actor, state or log object of a hibernated agent is left in memory.

The measured numbers are printed (run with `-s`); they go into the docs.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers.logcheck import assert_gap_free, count_children, count_fds, count_threads, last_status, read_events, read_snapshots, turn_problems  # noqa: E402

from agent_runtime.agent.actor import ActorConfig, AgentActor  # noqa: E402
from agent_runtime.eventlog.sqlite import SqliteEventLog  # noqa: E402
from agent_runtime.host import AgentHandle, Host, HostConfig  # noqa: E402
from agent_runtime.manifest import make_manifest  # noqa: E402
from agent_runtime.metrics import rss_bytes  # noqa: E402
from agent_runtime.providers.simulated import PROGRAMS, SimulatedModelConfig, SimulatedProvider  # noqa: E402
from agent_runtime.agent.state import AgentState  # noqa: E402
from agent_runtime.tools.registry import default_registry  # noqa: E402

pytestmark = [pytest.mark.timeout(110), pytest.mark.asyncio]

N_AGENTS = 1000
SQLITE_THREADS = 2
TOOL_SLOTS = 8
IDLE_S = 0.5
FD_SLACK = 8  # descriptors the loop or the runtime may legitimately keep (none per agent)


def task(i: int) -> str:
    return f"task: write {sorted(PROGRAMS)[i % len(PROGRAMS)]}.py and check that it works"


def turns(handle: AgentHandle) -> int:
    actor = handle.actor
    return actor.state.turns if actor is not None else int(handle.summary.get("turns", 0))


async def wait_until(predicate: Any, timeout_s: float, what: str, step_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(step_s)


async def test_thousand_agents_bounded_threads_and_fds(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = HostConfig(data_dir=data_dir, actor=ActorConfig(idle_timeout_s=IDLE_S),
                        max_running_tools=TOOL_SLOTS, sqlite_threads=SQLITE_THREADS)
    # Every turn: list_dir, write_file, then `wc -l prog.py && grep -c print prog.py` (a real /bin/sh
    # with two children) and read_file. run_probability=0: no `python3 prog.py`, whose start-up
    # would be most of this test's CPU on two cores without testing anything more.
    provider = SimulatedProvider(SimulatedModelConfig(seed=5, run_probability=0.0))
    async with Host(config, provider, default_registry()) as host:
        # Warm-up: one agent, one full turn with tools, then hibernation.
        warm, _ = await host.apply(make_manifest("warmup"))
        await host.user_message("default/warmup", "w", task(0))
        await wait_until(lambda: warm.actor is None and warm.summary.get("turns") == 1, 20, "the warm-up turn")
        base_threads, base_fds, base_rss = count_threads(), count_fds(), rss_bytes()
        # Children this process already had (e.g. the e2e session's etcd + kube-apiserver in `make test`).
        base_children = count_children()

        peak = {"threads": base_threads, "fds": base_fds, "awake": 0, "running_tools": 0, "children": 0, "rss": base_rss}
        sampling = True

        async def sample() -> None:
            while sampling:
                peak["threads"] = max(peak["threads"], count_threads())
                peak["fds"] = max(peak["fds"], count_fds())
                peak["awake"] = max(peak["awake"], sum(h.actor is not None for h in host.handles.values()))
                peak["rss"] = max(peak["rss"], rss_bytes())
                peak["running_tools"] = max(peak["running_tools"], TOOL_SLOTS - host.tool_slots._value)  # noqa: SLF001
                peak["children"] = max(peak["children"], count_children() - base_children)
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        t0 = time.perf_counter()
        names = [f"agent-{i:04d}" for i in range(N_AGENTS)]
        for name in names:
            await host.apply(make_manifest(name))
        t_created = time.perf_counter()
        acks = await asyncio.gather(*(host.user_message(f"default/{n}", f"task-{i}", task(i)) for i, n in enumerate(names)))
        assert acks == [(1, False)] * N_AGENTS
        t_sent = time.perf_counter()
        handles = [host.get(f"default/{n}") for n in names]
        await wait_until(lambda: all(turns(h) == 1 for h in handles), 90, "every turn to finish", 0.1)
        t_done = time.perf_counter()
        await wait_until(lambda: all(h.actor is None for h in handles), 10, "every agent to hibernate")
        t_hibernated = time.perf_counter()
        await asyncio.sleep(0.1)
        sampling = False
        await sampler

        after_threads, after_fds = count_threads(), count_fds()
        gc.collect()
        leftovers = sum(type(o) in (AgentActor, AgentState, SqliteEventLog) for o in gc.get_objects())
        assert leftovers == 0, f"{leftovers} actors/states/logs of hibernated agents are still alive"
        assert host.counts_by_phase() == {"running": 0, "idle": 0, "hibernated": N_AGENTS + 1}
        summaries = [h.summary for h in handles]
        assert all(s["errors"] == 0 and s["tool_calls"] >= 3 for s in summaries), \
            [s for s in summaries if s["errors"] or s["tool_calls"] < 3][:3]
        tool_calls = sum(s["tool_calls"] for s in summaries)
        events = sum(s["seq"] for s in summaries)

        print(
            f"\nmany agents: {N_AGENTS} agents, one turn each ({tool_calls} tool calls, {events} events)\n"
            f"  create {t_created - t0:.2f}s, send {t_sent - t_created:.2f}s, all turns done {t_done - t_sent:.2f}s "
            f"after the last ack, all hibernated {t_hibernated - t_done:.2f}s later; peak awake {peak['awake']}, "
            f"peak tools running {peak['running_tools']}, peak child processes {peak['children']} "
            f"(slots {TOOL_SLOTS})\n"
            f"  threads: baseline {base_threads} (after warm-up), peak {peak['threads']}, after {after_threads} "
            f"(limit baseline + {SQLITE_THREADS} sqlite threads)\n"
            f"  fds: baseline {base_fds}, peak {peak['fds']}, after hibernation {after_fds}\n"
            f"  rss: baseline {base_rss / 2**20:.0f} MiB, peak {peak['rss'] / 2**20:.0f} MiB, "
            f"after {rss_bytes() / 2**20:.0f} MiB; data dir {data_dir}"
        )
        assert peak["running_tools"] <= TOOL_SLOTS and 0 < peak["children"] <= TOOL_SLOTS, peak
        assert peak["threads"] <= base_threads + SQLITE_THREADS, peak
        assert after_threads <= base_threads + SQLITE_THREADS
        assert peak["fds"] > base_fds + N_AGENTS // 10, "the agents' logs never seemed open: the fd check means nothing"
        assert after_fds <= base_fds + FD_SLACK, f"fds after hibernation {after_fds} vs baseline {base_fds}"

    # Judged from the files (read-only, after a clean stop): every log ends idle, whole, snapshotted.
    for name in names:
        db = data_dir / "agents" / "default" / name / "events.db"
        rows = read_events(db)
        assert_gap_free(rows, name)
        assert last_status(rows) == {"state": "idle", "reason": "end_turn"}, name
        assert turn_problems(rows) == [], (name, turn_problems(rows))
        assert read_snapshots(db)[-1][0] == len(rows), name
