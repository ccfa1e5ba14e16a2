"""`agentctl demo`: hundreds of agents doing small coding tasks on one machine, with a live view.

It starts the mock provider servers in their own process (the Anthropic, OpenAI Chat, OpenAI
Responses and Gemini APIs, with the simulated model behind them streaming at a realistic rate,
prompt caching and a TTFT that grows with the uncached prompt) and the standalone server (auth on, SQLite logs under the demo's
data folder) on free ports. Agents of all four provider APIs run side by side: each model call goes
real adapter → real HTTP → local mock server → simulated model. The demo creates the agents through the HTTP API and
drives them like real users through the WebSocket protocol: two thirds stay attached and send a
new task when the last one finishes; one third drop their connection after each task, stay away
long enough for the agent to hibernate, then reconnect with their cursor (catching up only what
they missed) and wake it with the next task. It ends by itself and prints a summary.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from agent_runtime.agent.actor import ActorConfig
from agent_runtime.cli.client import Client
from agent_runtime.looplag import sample_loop_lag
from agent_runtime.manifest import API_VERSION
from agent_runtime.metrics import percentile, rss_bytes, thread_count
from agent_runtime.providers.registry import HTTP_PROVIDERS, KEY_VARIABLES, ProviderSettings
from agent_runtime.providers.simulated import PROGRAMS, SimulatedModelConfig
from agent_runtime.standalone import Running, ServerConfig, serve
from agent_runtime.tools.sandbox import confinement


@dataclasses.dataclass(frozen=True, slots=True)
class DemoConfig:
    agents: int = 200
    duration_s: float = 60.0
    data_dir: Path | None = None
    seed: int = 7
    tokens_per_s: float = 60.0
    ttft_s: float = 0.6
    run_probability: float = 0.2
    idle_timeout_s: float = 5.0
    think_s: tuple[float, float] = (1.0, 4.0)
    away_s: tuple[float, float] = (8.0, 14.0)
    ttft_per_uncached_token_s: float = 5e-5  # 10k uncached prompt tokens add half a second


@dataclasses.dataclass(slots=True)
class DriverStats:
    tasks_sent: int = 0
    tasks_done: int = 0
    reconnects: int = 0
    events_seen: int = 0
    catch_up_events: int = 0
    errors: int = 0


DEMO_MODELS = {"anthropic": "claude-sonnet-5", "openai": "gpt-5.1-mini", "openai-responses": "gpt-5.1-mini",
               "gemini": "gemini-2.5-flash"}


DEMO_COMPRESSION = (1024, 384, 2048)  # tailBudget, keepTail, frozenBudget


def manifests_yaml(n: int) -> str:
    """`n` agents, the four provider APIs in turn."""
    docs = []
    providers = list(DEMO_MODELS)
    for i in range(n):
        provider = providers[i % len(providers)]
        docs.append(
            f"apiVersion: {API_VERSION}\nkind: Agent\nmetadata:\n  name: agent-{i:03d}\n  namespace: default\n"
            f"spec:\n  model: {{provider: {provider}, name: {DEMO_MODELS[provider]}}}\n"
            "  systemPrompt: You are a careful coding agent. Work in your workspace.\n"
            "  limits: {maxTurns: 12, tokenBudget: 400000}\n"
            # budgets scaled to the demo's small tasks (~300 tokens each) so a one-minute run folds
            f"  compression: {{tailBudget: {DEMO_COMPRESSION[0]}, keepTail: {DEMO_COMPRESSION[1]}, "
            f"frozenBudget: {DEMO_COMPRESSION[2]}}}\n"
        )
    return "---\n".join(docs)


TASKS = [f"task: write {name}.py and check that it works" for name in PROGRAMS] + [
    "What is in the workspace now?",
    "task: improve the fib program",
]


async def _wait_idle(ws: Any, after_seq: int, stats: DriverStats) -> int:
    """Read frames until the turn started at `after_seq` is idle; returns the last seq seen."""
    last = after_seq
    async for msg in ws:
        frame = orjson.loads(msg.data)
        if frame.get("type") == "event":
            stats.events_seen += 1
            last = int(frame["seq"])
            if frame["kind"] == "status" and frame["data"].get("state") == "idle" and frame["seq"] > after_seq:
                return last
    raise ConnectionError("connection closed")


async def _hello(ws: Any, cursor: int, stats: DriverStats) -> int:
    await ws.send_str(orjson.dumps({"type": "hello", "cursor": cursor}).decode())
    async for msg in ws:
        frame = orjson.loads(msg.data)
        if frame.get("type") == "welcome":
            head = int(frame["head"])
            stats.catch_up_events += head - cursor
            return head
    raise ConnectionError("closed before welcome")


async def _send(ws: Any, text: str, stats: DriverStats) -> int:
    client_id = uuid.uuid4().hex
    await ws.send_str(orjson.dumps({"type": "user_message", "id": client_id, "text": text}).decode())
    stats.tasks_sent += 1
    async for msg in ws:
        frame = orjson.loads(msg.data)
        if frame.get("type") == "ack" and frame["id"] == client_id:
            return int(frame["seq"])
        if frame.get("type") == "event":
            stats.events_seen += 1
    raise ConnectionError("closed before ack")


async def drive(client: Client, key: str, bursty: bool, rng: random.Random, cfg: DemoConfig, stats: DriverStats) -> None:
    """One simulated user of one agent."""
    cursor = 0
    await asyncio.sleep(rng.uniform(0, 2.0))  # stagger the start
    ws = await client.connect(key)
    try:
        cursor = await _hello(ws, cursor, stats)
        while True:
            seq = await _send(ws, rng.choice(TASKS), stats)
            if bursty:
                # Leave while the agent works; the loop does not wait for us. Come back later,
                # catch up by cursor (only what we missed), and find the turn finished.
                await ws.close()
                await asyncio.sleep(rng.uniform(*cfg.away_s))
                ws = await client.connect(key)
                stats.reconnects += 1
                await _hello(ws, cursor, stats)
            cursor = await _wait_idle(ws, seq, stats)
            stats.tasks_done += 1
            await asyncio.sleep(rng.uniform(*cfg.think_s))
    finally:
        await ws.close()


class View:
    """The live terminal view: one frame per second."""

    def __init__(self, running: Running, stats: DriverStats, cfg: DemoConfig) -> None:
        self.running = running
        self.stats = stats
        self.cfg = cfg
        self.tty = sys.stdout.isatty()
        self.started = time.monotonic()
        self.threads_at_start = thread_count()
        config = running.host.config
        # main thread + the SQLite pool + the tools' file-IO pool (pools start their threads lazily)
        self.thread_bound = 1 + config.sqlite_threads + config.tool_io_threads
        self.samples: list[tuple[float, int, int, float]] = []  # (t, turns, events, process CPU s)
        self.cpu_at_start = time.process_time()
        self.turns_at_start = running.host.metrics.turns_completed
        self.peak_rss = 0
        self.lags: collections.deque[float] = collections.deque(maxlen=2000)

    def rates(self) -> tuple[float, float, float]:
        """turns/s, events/s and this process's CPU ms per turn over the last few seconds."""
        m = self.running.host.metrics
        now, cpu = time.monotonic(), time.process_time()
        self.samples.append((now, m.turns_completed, m.events_appended, cpu))
        window = [s for s in self.samples if now - s[0] <= 6.0]
        self.samples = window
        t0, turns0, events0, cpu0 = window[0]
        dt = max(now - t0, 1e-6)
        turns = m.turns_completed - turns0
        return turns / dt, (m.events_appended - events0) / dt, (cpu - cpu0) * 1000 / turns if turns else 0.0

    def cpu_ms_per_turn(self) -> float:
        turns = self.running.host.metrics.turns_completed - self.turns_at_start
        return (time.process_time() - self.cpu_at_start) * 1000 / turns if turns else 0.0

    def frame(self) -> str:
        host = self.running.host
        m = host.metrics
        phases = host.counts_by_phase()
        turns_s, events_s, cpu_turn = self.rates()
        rss = rss_bytes()
        self.peak_rss = max(self.peak_rss, rss)
        elapsed = time.monotonic() - self.started
        bar = "█" * int(30 * min(1.0, elapsed / self.cfg.duration_s))
        lines = [
            f"agent runtime demo — {len(host.handles)} agents, 4 provider APIs via local mocks   "
            f"[{bar:<30}] {elapsed:5.1f}/{self.cfg.duration_s:.0f}s",
            f"  agents    running {phases['running']:>4}   idle {phases['idle']:>4}   hibernated {phases['hibernated']:>4}"
            f"   clients {m.clients_connected:>4}",
            f"  rates     turns/s {turns_s:7.1f}   events/s {events_s:8.1f}   CPU/turn {cpu_turn:6.2f} ms"
            f"   tool runs {m.tool_runs:>7}",
            f"  totals    turns {m.turns_completed:>7}   events {m.events_appended:>8}   reconnects {self.stats.reconnects:>5}"
            f"   caught-up events {self.stats.catch_up_events:>6}",
            f"  process   RSS {rss / 2**20:7.1f} MiB   threads {thread_count():>3} (bound {self.thread_bound}, not per agent)"
            f"   turn overhead p50 {m.overhead_ms(0.5):6.2f} ms  p99 {m.overhead_ms(0.99):6.2f} ms",
            f"  loop lag  p50 {percentile(self.lags, 0.5) * 1000:6.2f} ms   p99 {percentile(self.lags, 0.99) * 1000:6.2f} ms"
            f"   max {max(self.lags, default=0.0) * 1000:7.2f} ms",
        ]
        return "\n".join(lines)

    async def watch_loop_lag(self) -> None:
        """How late a 50 ms timer fires: the event loop's responsiveness under this load."""
        await sample_loop_lag(0.05, self.lags.append)

    async def run(self) -> None:
        drawn = 0
        while True:
            text = self.frame()
            if self.tty:
                if drawn:
                    sys.stdout.write(f"\033[{drawn}F\033[J")
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
                drawn = text.count("\n") + 1
                await asyncio.sleep(1.0)
            else:
                print(text, flush=True)
                print(flush=True)
                await asyncio.sleep(5.0)


def usage_rows(m: Any) -> list[tuple[str, str]]:
    """Per provider: model calls, tokens as reported (input / cache read / cache write / output), retries."""
    rows = []
    for provider in sorted(m.model_calls_by):
        t = {kind: m.tokens_by[(provider, kind)] for kind in ("input", "cache_read", "cache_write", "output")}
        retried = sum(n for (p, _), n in m.retries_by.items() if p == provider)
        prompt = t["input"] + t["cache_read"] + t["cache_write"]
        hit = t["cache_read"] / prompt if prompt else 0.0
        rows.append((f"{provider}: calls / tokens in, cache read, cache write, out / retries",
                     f"{m.model_calls_by[provider]} / {t['input']}, {t['cache_read']}, {t['cache_write']}, {t['output']}"
                     f" ({hit:.0%} of prompt tokens read from cache) / {retried}"))
    return rows


def summary(running: Running, stats: DriverStats, view: View, cfg: DemoConfig, data_dir: Path, elapsed: float) -> str:
    host = running.host
    m = host.metrics
    wakes = sum(h.wakes for h in host.handles.values())
    rows = [
        ("agents", f"{len(host.handles)}"),
        ("duration", f"{elapsed:.1f} s"),
        ("tasks sent / finished", f"{stats.tasks_sent} / {stats.tasks_done}"),
        ("turns completed", f"{m.turns_completed} ({m.turns_completed / elapsed:.1f}/s)"),
        ("events committed", f"{m.events_appended} ({m.events_appended / elapsed:.0f}/s)"),
        ("tool runs (real subprocesses and files)", f"{m.tool_runs}"),
        ("shell tool confinement", confinement()),
        ("agent wakes (incl. after hibernation)", f"{wakes}"),
        ("client reconnects / events caught up by cursor", f"{stats.reconnects} / {stats.catch_up_events}"),
        ("slow clients dropped", f"{m.clients_dropped_slow}"),
        ("turn overhead p50 / p99 (wall minus model and tools)", f"{m.overhead_ms(0.5):.2f} ms / {m.overhead_ms(0.99):.2f} ms"),
        ("runtime CPU per turn (this process, all threads; demo clients included)", f"{view.cpu_ms_per_turn():.2f} ms"),
        ("event loop lag p50 / p99 / max", f"{percentile(view.lags, 0.5) * 1000:.2f} / {percentile(view.lags, 0.99) * 1000:.2f}"
                                          f" / {max(view.lags, default=0.0) * 1000:.2f} ms"),
        ("peak RSS", f"{view.peak_rss / 2**20:.1f} MiB ({view.peak_rss / max(1, len(host.handles)) / 1024:.0f} KiB per agent)"),
        ("threads at start / end / bound", f"{view.threads_at_start} / {thread_count()} / {view.thread_bound}"
                                           " (main + 2 SQLite + 2 tool-IO; never per agent)"),
        ("driver errors", f"{stats.errors}"),
        ("compressions (frozen chunks made) / messages folded / tokens before → after",
         f"{m.compressions} / {m.compression_messages} / {m.compression_tokens_before} → {m.compression_tokens_after}"
         f" ({m.compression_cpu_s * 1000 / max(1, m.compressions):.2f} ms CPU each)"),
        *usage_rows(m),
    ]
    width = max(len(k) for k, _ in rows)
    out = ["", "Summary", "-" * (width + 30)]
    out += [f"{k:<{width}}  {v}" for k, v in rows]
    out += [
        "",
        f"The agents, their SQLite logs and workspaces are in {data_dir}. To look at one:",
        f"  .venv/bin/agentctl serve --data-dir {data_dir} &",
        f"  .venv/bin/agentctl --token $(cat {data_dir}/admin.token) attach default/agent-007",
        f"  .venv/bin/agentctl --token $(cat {data_dir}/admin.token) logs default/agent-007",
    ]
    return "\n".join(out)


async def run_demo(cfg: DemoConfig) -> int:
    data_dir = cfg.data_dir or Path("var") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    model = SimulatedModelConfig(seed=cfg.seed, tokens_per_s=cfg.tokens_per_s, ttft_s=cfg.ttft_s,
                                 run_probability=cfg.run_probability)
    # The demo's keys for the local mocks: a secrets folder like a mounted Kubernetes secret.
    secrets = data_dir / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    for provider in HTTP_PROVIDERS:
        for var in KEY_VARIABLES[provider]:
            (secrets / var).write_text("demo-key-for-the-local-mock\n", encoding="utf-8")
    stats = DriverStats()
    # The mock provider servers run in their own process, as a real provider would be elsewhere:
    # this process's CPU figures are the runtime's (and the demo clients').
    async with mock_process(cfg) as mock_url:
        settings = ProviderSettings(secrets_dir=secrets)
        for provider in HTTP_PROVIDERS:
            settings = settings.with_base_url(provider, mock_url + "/v1" if provider.startswith("openai") else mock_url)
        server_config = ServerConfig(data_dir=data_dir, port=0, actor=ActorConfig(idle_timeout_s=cfg.idle_timeout_s),
                                     model=model, providers=settings)
        return await _run(cfg, server_config, stats, data_dir, mock_url)


@contextlib.asynccontextmanager
async def mock_process(cfg: DemoConfig) -> AsyncIterator[str]:
    """`python -m mock_providers` with the demo's model pacing; yields its base URL.

    Started with `subprocess.Popen` on a port picked here and polled until it answers: asyncio's
    child watcher would keep a thread waiting on the process for the whole demo."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Each streamed text event carries about 4 tokens.
    interval = 4 / cfg.tokens_per_s if cfg.tokens_per_s > 0 else 0.0
    proc = subprocess.Popen(
        [sys.executable, "-m", "mock_providers", "--port", str(port), "--seed", str(cfg.seed),
         "--ttft-base", str(cfg.ttft_s / 2), "--ttft-per-token", str(cfg.ttft_per_uncached_token_s),
         "--event-interval", str(interval), "--run-probability", str(cfg.run_probability)],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                if proc.poll() is not None:
                    raise RuntimeError(f"mock provider process exited with {proc.returncode}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url + "/mock/stats") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("mock provider process did not start in 30 s")
        yield url
    finally:
        proc.terminate()
        for _ in range(100):
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
        else:
            proc.kill()
            proc.wait()


async def _run(cfg: DemoConfig, server_config: ServerConfig, stats: DriverStats, data_dir: Path, mock_url: str) -> int:
    async with serve(server_config) as running:
        print(f"mock provider APIs on {mock_url} (own process)", flush=True)
        print(f"server on {running.url}; data in {data_dir}; creating {cfg.agents} agents…", flush=True)
        async with Client(running.url, running.admin_token) as client:
            await client.apply(manifests_yaml(cfg.agents))
            view = View(running, stats, cfg)
            rng = random.Random(cfg.seed)
            started = time.monotonic()

            async def guarded(key: str, bursty: bool, seed: int) -> None:
                try:
                    await drive(client, key, bursty, random.Random(seed), cfg, stats)
                except (ConnectionError, OSError):
                    stats.errors += 1

            tasks: list[asyncio.Task[None]] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(cfg.duration_s), asyncio.TaskGroup() as tg:
                    tasks.append(tg.create_task(view.run()))
                    tasks.append(tg.create_task(view.watch_loop_lag()))
                    for i in range(cfg.agents):
                        tasks.append(tg.create_task(guarded(f"default/agent-{i:03d}", i % 3 == 2, rng.randrange(2**32))))
            elapsed = time.monotonic() - started
            if view.tty:
                sys.stdout.write(view.frame() + "\n")
            print(summary(running, stats, view, cfg, data_dir, elapsed), flush=True)
    return 0 if stats.tasks_done > 0 else 1
