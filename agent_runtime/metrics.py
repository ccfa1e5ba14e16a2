"""Shard-wide counters and the Prometheus text rendering of `/metrics`.

Plain attributes incremented on the hot path (no locks: one event loop), plus a bounded window of
recent turn overheads for p50/p99. `render()` produces the Prometheus text exposition format.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Iterable


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def thread_count() -> int:
    """OS threads of this process (every thread, not only Python's)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def percentile(values: Iterable[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return 0.0
    k = min(len(data) - 1, max(0, round(q * (len(data) - 1))))
    return data[k]


class Metrics:
    """Counters of one shard (one process)."""

    def __init__(self, window: int = 4096) -> None:
        self.events_appended = 0
        self.turns_completed = 0
        self.model_retries = 0
        self.tool_runs = 0
        self.messages_received = 0
        self.clients_connected = 0
        self.clients_dropped_slow = 0
        self.frames_rejected = 0
        self.turn_overheads: collections.deque[float] = collections.deque(maxlen=window)

    def turn_finished(self, overhead_s: float) -> None:
        """A turn ended; `overhead_s` is its wall time minus time waiting on the model and tools."""
        self.turns_completed += 1
        self.turn_overheads.append(max(0.0, overhead_s))

    def overhead_ms(self, q: float) -> float:
        return percentile(self.turn_overheads, q) * 1000.0

    def render(self, gauges: dict[str, float]) -> str:
        """Prometheus text format. `gauges` come from the host (agents by state, usage totals)."""
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, value: float, labels: str = "") -> None:
            if not any(line.startswith(f"# HELP {name} ") for line in lines):
                lines.append(f"# HELP {name} {help_}")
                lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name}{labels} {value}")

        metric("agent_runtime_events_appended_total", "counter", "Events committed to agent logs.", self.events_appended)
        metric("agent_runtime_turns_completed_total", "counter", "Turns that reached idle.", self.turns_completed)
        metric("agent_runtime_model_retries_total", "counter", "Model calls retried.", self.model_retries)
        metric("agent_runtime_tool_runs_total", "counter", "Tool calls executed.", self.tool_runs)
        metric("agent_runtime_user_messages_total", "counter", "User messages received.", self.messages_received)
        metric("agent_runtime_clients_connected", "gauge", "WebSocket clients attached.", self.clients_connected)
        metric(
            "agent_runtime_clients_dropped_slow_total", "counter", "Clients disconnected for a full send queue.",
            self.clients_dropped_slow,
        )
        metric("agent_runtime_frames_rejected_total", "counter", "Bad client frames answered with error.", self.frames_rejected)
        for q in (0.5, 0.99):
            metric(
                "agent_runtime_turn_overhead_seconds", "gauge", "Turn wall time minus model and tool time (recent window).",
                self.overhead_ms(q) / 1000.0, f'{{quantile="{q}"}}',
            )
        metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss_bytes())
        metric("process_threads", "gauge", "OS threads of the process.", thread_count())
        for name, value in sorted(gauges.items()):
            base, _, labels = name.partition("{")
            metric(base, "gauge", base.replace("_", " ") + ".", value, "{" + labels if labels else "")
        return "\n".join(lines) + "\n"
