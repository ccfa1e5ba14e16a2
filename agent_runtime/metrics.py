"""Shard-wide counters and the Prometheus text rendering of `/metrics`; each agent's compression CPU meter.

Plain attributes incremented on the hot path (no locks: one event loop), plus a bounded window of
recent turn overheads for p50/p99. `render()` produces the Prometheus text exposition format.
`CompressionMeter` is per agent (`actor.meter`): the thread CPU of its compression work, which the
cache benchmark reads; the shard's `compression_cpu_s` sums the folding part.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Protocol
import threading
from collections.abc import Iterable


class Usage(Protocol):
    """`agent_runtime.messages.Usage` (metrics sits below messages' layer, so a structural type)."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...

USAGE_KINDS = ("input", "output", "cache_read", "cache_write")


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


@dataclasses.dataclass(slots=True)
class CompressionMeter:
    """Thread CPU of an agent's compression work, for /metrics and the cache benchmark: counting the
    new messages' tokens (the tail budget's input, done once per message when it is committed),
    preparing each new message for folding (`compression.prepare`), planning (the over-budget check
    and the cut), folding and consolidating; and the messages each fold analysed."""

    counting_s: float = 0.0
    preparing_s: float = 0.0
    planning_s: float = 0.0
    folding_s: float = 0.0
    analysed: int = 0
    folds: int = 0
    counted_tokens: int = 0  # tokens of the new messages counted (the work `counting_s` is for)

    @property
    def cpu_s(self) -> float:
        return self.counting_s + self.preparing_s + self.planning_s + self.folding_s


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
        # by (provider, reason|code|kind)
        self.retries_by: collections.Counter[tuple[str, str]] = collections.Counter()
        self.model_errors_by: collections.Counter[tuple[str, str]] = collections.Counter()
        self.tokens_by: collections.Counter[tuple[str, str]] = collections.Counter()
        self.model_calls_by: collections.Counter[str] = collections.Counter()
        self.cost_units_by: dict[str, float] = collections.defaultdict(float)
        self.compressions = 0
        self.consolidations = 0
        self.compression_tokens_before = 0
        self.compression_tokens_after = 0
        self.compression_messages = 0
        self.compression_cpu_s = 0.0
        # Kubernetes shard mode: Agent status patches by kind (transition, activity, refused)
        self.status_patches_by: collections.Counter[str] = collections.Counter()

    def model_retry(self, provider: str, reason: str) -> None:
        """A model call is retried (`reason` is the `ProviderError` code)."""
        self.model_retries += 1
        self.retries_by[(provider, reason)] += 1

    def model_error(self, provider: str, code: str) -> None:
        """A model call failed for good (not retryable, or retries exhausted)."""
        self.model_errors_by[(provider, code)] += 1

    def model_usage(self, provider: str, usage: Usage, cost_units: float = 0.0, completed: bool = True) -> None:
        """A model call's tokens as the provider reported them and its estimated cost (input-token
        units, `agent_runtime.pricing`); `completed=False`: an attempt that failed or was
        interrupted (its tokens are billed; it is not counted as a call)."""
        if completed:
            self.model_calls_by[provider] += 1
        self.cost_units_by[provider] += cost_units
        t = self.tokens_by
        t[(provider, "input")] += usage.input_tokens
        t[(provider, "output")] += usage.output_tokens
        t[(provider, "cache_read")] += usage.cache_read_tokens
        t[(provider, "cache_write")] += usage.cache_write_tokens

    def compressed(self, messages: int, tokens_before: int, tokens_after: int, cpu_s: float,
                   consolidated: bool = False) -> None:
        """A fold made a new frozen chunk of `messages` messages, or (`consolidated`) the frozen
        chunks became one archive chunk."""
        self.compression_cpu_s += cpu_s
        if consolidated:
            self.consolidations += 1
            return
        self.compressions += 1
        self.compression_messages += messages
        self.compression_tokens_before += tokens_before
        self.compression_tokens_after += tokens_after

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
        for kind, count in sorted(self.status_patches_by.items()):
            metric("agent_runtime_status_patches_total", "counter",
                   "Agent status patches sent by this shard (kind: transition, activity; refused: the agent had moved).",
                   count, f'{{kind="{kind}"}}')
        for provider, count in sorted(self.model_calls_by.items()):
            metric("agent_runtime_model_calls_total", "counter", "Completed model calls.", count,
                   f'{{provider="{provider}"}}')
        for (provider, kind), count in sorted(self.tokens_by.items()):
            metric("agent_runtime_model_tokens_total", "counter", "Tokens of completed model calls, as providers reported.",
                   count, f'{{provider="{provider}",kind="{kind}"}}')
        for provider, units in sorted(self.cost_units_by.items()):
            metric("agent_runtime_model_cost_units_total", "counter",
                   "Estimated cost of completed model calls in input-token units (list-price multipliers).",
                   round(units, 2), f'{{provider="{provider}"}}')
        metric("agent_runtime_compressions_total", "counter", "Frozen chunks made by folding the live tail.", self.compressions)
        metric("agent_runtime_consolidations_total", "counter", "Times the frozen chunks became one archive chunk.",
               self.consolidations)
        metric("agent_runtime_compression_folded_messages_total", "counter", "Messages folded into frozen chunks.",
               self.compression_messages)
        metric("agent_runtime_compression_tokens_total", "counter", "Tokens of folded messages before and after folding.",
               self.compression_tokens_before, '{stage="before"}')
        metric("agent_runtime_compression_tokens_total", "counter", "Tokens of folded messages before and after folding.",
               self.compression_tokens_after, '{stage="after"}')
        metric("agent_runtime_compression_cpu_seconds_total", "counter", "Thread CPU spent folding and consolidating.",
               round(self.compression_cpu_s, 6))
        for (provider, reason), count in sorted(self.retries_by.items()):
            metric("agent_runtime_model_retries_by_reason_total", "counter", "Model calls retried, by provider and reason.",
                   count, f'{{provider="{provider}",reason="{reason}"}}')
        for (provider, code), count in sorted(self.model_errors_by.items()):
            metric("agent_runtime_model_errors_total", "counter", "Model calls that failed for good.", count,
                   f'{{provider="{provider}",code="{code}"}}')
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
