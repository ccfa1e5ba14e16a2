"""Does turn 500 cost what turn 5 costs? Our runtime against the naive baseline, in one run.

For conversations at depth 5, 50 and 500 turns, measure the next turns' server CPU time (all
threads, from /proc/<pid>/task/*/schedstat, ns resolution), bytes the server process wrote
(`wchar` of /proc/<pid>/io: SQLite's writes; socket sends are not counted there) and bytes the
attached WebSocket client received. Each server runs in its own process (bench/_turn_cost_server.py)
with the same simulated model and in-memory tools; the naive one rewrites the whole history into
SQLite and sends the whole transcript every turn.

Run: .venv/bin/python bench/turn_cost.py   (prints one JSON document)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
DEPTHS = (5, 50, 500)
MEASURED_TURNS = 15
TASK = "task: write fib.py and check it"


def cpu_ns(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just ended
    return total


def wchar(pid: int) -> int:
    with open(f"/proc/{pid}/io", encoding="ascii") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError("no wchar")


class Server:
    def __init__(self, mode: str, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_turn_cost_server.py"), mode, str(data_dir)],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"{mode} server did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


async def turn(ws: aiohttp.ClientWebSocketResponse, mode: str, n: int) -> int:
    """Send one task and read until the turn is over; returns the bytes received."""
    await ws.send_str(json.dumps({"type": "user_message", "id": f"m{n}", "text": TASK}))
    received = 0
    ack_seq = None
    async for msg in ws:
        received += len(msg.data.encode()) if isinstance(msg.data, str) else len(msg.data)
        frame = json.loads(msg.data)
        if mode == "naive":
            if frame.get("type") == "transcript":
                return received
            continue
        if frame.get("type") == "ack":
            ack_seq = frame["seq"]
        elif (frame.get("type") == "event" and frame["kind"] == "status" and frame["data"].get("state") == "idle"
              and ack_seq is not None and frame["seq"] > ack_seq):
            return received
    raise ConnectionError("closed mid-turn")


async def measure(mode: str, server: Server, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
    pid = server.proc.pid
    if mode == "ours":
        docs = "---\n".join(
            f"apiVersion: agentruntime.dev/v1alpha1\nkind: Agent\nmetadata: {{name: d{d}}}\n"
            "spec: {limits: {tokenBudget: 100000000, maxTurns: 50}}\n"
            for d in DEPTHS
        )
        async with session.post(server.url + "/v1/agents", data=docs) as resp:
            assert resp.status in (200, 201), await resp.text()
    rows = []
    for depth in DEPTHS:
        ws = await session.ws_connect(server.url.replace("http", "ws") + f"/v1/agents/default/d{depth}/ws", max_msg_size=0)
        if mode == "ours":
            await ws.send_str(json.dumps({"type": "hello", "cursor": 0}))
            await ws.receive()  # welcome
        for n in range(depth):
            await turn(ws, mode, n)
        cpu, written, sent = [], [], []
        for n in range(depth, depth + MEASURED_TURNS):
            c0, w0 = cpu_ns(pid), wchar(pid)
            got = await turn(ws, mode, n)
            await asyncio.sleep(0.01)  # let the server finish the turn's tail work (e.g. a snapshot)
            cpu.append((cpu_ns(pid) - c0) / 1e6)
            written.append(wchar(pid) - w0)
            sent.append(got)
        await ws.close()
        rows.append({
            "impl": mode, "depth": depth,
            "cpu_ms_per_turn": round(statistics.median(cpu), 3),
            "sqlite_bytes_per_turn": int(statistics.median(written)),
            "client_bytes_per_turn": int(statistics.median(sent)),
        })
    return rows


def ratio(rows: list[dict[str, Any]], impl: str, field: str) -> float:
    by_depth = {r["depth"]: r[field] for r in rows if r["impl"] == impl}
    return round(by_depth[500] / max(by_depth[5], 1e-9), 3)


async def main() -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="turn-cost-") as tmp:
        async with aiohttp.ClientSession() as session:
            for mode in ("ours", "naive"):
                server = Server(mode, Path(tmp) / mode)
                try:
                    rows += await measure(mode, server, session)
                finally:
                    server.stop()
    checks = []
    for name, field in (("cpu_growth_500_vs_5", "cpu_ms_per_turn"), ("sqlite_bytes_growth_500_vs_5", "sqlite_bytes_per_turn"),
                        ("client_bytes_growth_500_vs_5", "client_bytes_per_turn")):
        value = ratio(rows, "ours", field)
        checks.append({"name": name, "value": value, "target": "<= 1.2", "met": value <= 1.2})
    naive = ratio(rows, "naive", "sqlite_bytes_per_turn")
    checks.append({"name": "naive_sqlite_bytes_growth_500_vs_5", "value": naive, "target": "> 1.2 (grows with depth)",
                   "met": naive > 1.2})
    return {"bench": "turn_cost", "results": rows, "checks": checks,
            "measured_turns_per_depth": MEASURED_TURNS, "seconds": round(time.monotonic() - started, 1)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
