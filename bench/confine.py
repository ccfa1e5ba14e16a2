"""What Landlock confinement adds to a shell tool call, and why it is applied by an exec wrapper.

* shell_call: the same `true` command through the real shell tool (`ShellTool` via the registry:
  scrubbed env, prlimit rlimits, a pids cgroup when the machine has one, process-group watch),
  confined (the runtime builds the call's ruleset, `python -I -S tools/confine.py` enters it)
  against naive (the same path with Landlock reported unavailable: no ruleset, no wrapper),
  interleaved call by call in the same process. Wall time per call and the CPU the call's child
  processes used (RUSAGE_CHILDREN: the wrapper's interpreter start is CPU).
* ruleset_build: the runtime-side part alone (create the ruleset, open and add ~18 paths).
* preexec_alternative: the design not taken. A `preexec_fn` (ctypes syscalls between fork and
  exec) makes subprocess use fork() instead of vfork(); its cost grows with the runtime's resident
  memory (page tables copied per call). Measured with plain `subprocess.run(["/bin/sh", "-c",
  "true"])` with and without an empty preexec_fn, at this process's size and with 1 GiB touched.

Check `added_latency_ms_p50`: p50(confined) - p50(naive) < 15 ms.

Run: .venv/bin/python bench/confine.py   (about 20 s; prints one JSON document)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent_runtime.messages import ToolCall
from agent_runtime.tools import ToolContext, default_registry, landlock, sandbox

CALLS = 150
SPAWNS = 60


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _quantiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "p50_ms": round(statistics.median(xs) * 1000, 2),
        "p90_ms": round(xs[int(0.9 * (len(xs) - 1))] * 1000, 2),
        "mean_ms": round(statistics.fmean(xs) * 1000, 2),
    }


async def shell_calls(ws: Path) -> list[dict[str, Any]]:
    reg = default_registry()
    ctx = ToolContext(workspace=ws, timeout_s=30, memory_mb=1024, cpu_s=60, open_files=256, processes=64)
    real = sandbox.landlock_available
    naive = lambda: False  # noqa: E731 - the code path of a kernel without Landlock
    times: dict[str, list[float]] = {"confined": [], "naive": []}
    cpu: dict[str, float] = {"confined": 0.0, "naive": 0.0}
    for i in range(CALLS * 2 + 10):
        mode = "confined" if i % 2 == 0 else "naive"
        sandbox.landlock_available = real if mode == "confined" else naive  # type: ignore[assignment]
        c0, t0 = _children_cpu_s(), time.perf_counter()
        res = await reg.execute(ToolCall("c", "shell", {"command": "true"}), ctx)
        t1, c1 = time.perf_counter(), _children_cpu_s()
        assert not res.is_error, res.content
        if i >= 10:  # warm-up
            times[mode].append(t1 - t0)
            cpu[mode] += c1 - c0
    sandbox.landlock_available = real  # type: ignore[assignment]
    return [
        {"case": "shell_call", "mode": m, "calls": len(times[m]), **_quantiles(times[m]),
         "child_cpu_ms_per_call": round(cpu[m] / len(times[m]) * 1000, 2)}
        for m in ("naive", "confined")
    ]


def ruleset_build(ws: Path) -> dict[str, Any]:
    abi = landlock.abi_version()
    rules = landlock.policy(str(ws), landlock.default_read_paths())
    n = 500
    t0 = time.perf_counter()
    for _ in range(n):
        os.close(landlock.build_ruleset(rules, abi))
    per = (time.perf_counter() - t0) / n
    return {"case": "ruleset_build", "rules": len(rules), "us_per_call": round(per * 1e6, 1)}


def _spawn(preexec: bool) -> float:
    t0 = time.perf_counter()
    subprocess.run(["/bin/sh", "-c", "true"], start_new_session=True, close_fds=True, check=True,
                   preexec_fn=(lambda: None) if preexec else None)  # noqa: PLW1509 - the alternative measured
    return time.perf_counter() - t0


def preexec_alternative() -> list[dict[str, Any]]:
    rows = []
    ballast = bytearray(0)
    for label, mib in (("this process", 0), ("+1 GiB touched", 1024)):
        ballast = bytearray(mib * 1024 * 1024)
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1
        vfork = [_spawn(False) for _ in range(SPAWNS)]
        fork = [_spawn(True) for _ in range(SPAWNS)]
        rows.append({
            "case": "preexec_alternative", "resident": label, "rss_mib": _rss_mib(),
            "vfork_p50_ms": _quantiles(vfork)["p50_ms"], "fork_preexec_p50_ms": _quantiles(fork)["p50_ms"],
        })
    del ballast
    return rows


def _rss_mib() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)


def main() -> dict[str, Any]:
    logging.basicConfig(level=logging.ERROR)
    if not sandbox.landlock_available():
        return {"bench": "confine", "results": [], "checks": [
            {"name": "added_latency_ms_p50", "value": None, "target": "< 15", "met": False,
             "note": f"Landlock unavailable: {landlock.unavailable_reason()}"}]}
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        rows: list[dict[str, Any]] = asyncio.run(shell_calls(ws))
        rows.append(ruleset_build(ws))
    rows.extend(preexec_alternative())
    naive, confined = rows[0], rows[1]
    added = round(confined["p50_ms"] - naive["p50_ms"], 2)
    meta = {"landlock_abi": landlock.abi_version(), "python": sys.version.split()[0],
            "pids_cgroup": sandbox.pids_cgroup_available(), "cpus": os.cpu_count()}
    checks = [{"name": "added_latency_ms_p50", "value": added, "target": "< 15", "met": added < 15}]
    return {"bench": "confine", "meta": meta, "results": rows, "checks": checks}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
