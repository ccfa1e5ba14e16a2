"""bench/cache.py end to end, short (20 turns of each variant): it still runs through the real host,
tools, Anthropic adapter and mock server, and what it reports still says something. Facts, not timings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ["cached_share_steady", "naive_cached_share_steady", "compression_cpu_growth_300_vs_10", "cost_per_turn_300_vs_30"]


def run_bench(turns: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "cache.py"), "--turns", str(turns)],
                          capture_output=True, timeout=100, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    doc: dict[str, Any] = orjson.loads(done.stdout)  # one JSON document, nothing else on stdout
    return doc


def test_cache_bench_short_run() -> None:
    doc = run_bench(20)
    assert doc["bench"] == "cache"
    assert [c["name"] for c in doc["checks"]] == CHECKS
    for c in doc["checks"]:
        assert set(c) == {"name", "value", "target", "met"} and isinstance(c["met"], bool), c
    rows = {r["variant"]: r for r in doc["results"]}
    assert {"ours", "none", "naive", "naive-160k", "naive-fresh"} <= set(rows)
    ours, none, naive = rows["ours"], rows["none"], rows["naive"]
    baseline = next(r for r in doc["results"] if r["variant"].startswith("naive planner"))

    for row in (ours, none, naive):
        assert row["turns"] == 20
        assert 2 * 20 <= row["model_calls"] - row["summary_calls"] <= 4 * 20  # 2-4 model calls per turn
        # the session model saw every request end where its plan expected: nothing garbled on the way
        assert row["session_model"]["mismatches"] == 0, row
        assert row["tool_outputs"] >= 20
        assert row["cache_read_tokens"] > 0 and row["cache_write_tokens"] > 0
        assert 0 < row["cached_share"] < 1

    # ours folds (the runtime's compression events), the others never do
    assert ours["compressions"] >= 1
    events = [e for e in ours["compression_events"] if e != "..."]
    assert events and all(e["tokens_after"] < e["tokens_before"] and e["folded_messages"] > 0 for e in events)
    assert events[0]["chunk"] == 1
    assert ours["analysed_per_turn_at_20"] > 0
    assert none["compressions"] == 0 and none["summary_calls"] == 0
    # naive compaction issues its summary calls through the same mock (the model wrote each summary)
    assert naive["summary_calls"] >= 1 and naive["session_model"]["summaries"] == naive["summary_calls"]
    assert naive["session_model"]["summaries"] == naive["compressions"]
    # the same compaction with its own summariser system prompt: the summary calls miss the cache
    fresh = rows["naive-fresh"]
    assert fresh["summary_calls"] == naive["summary_calls"] and fresh["cache_read_tokens"] < naive["cache_read_tokens"]
    # without compression the prompt only grows; both compressions keep it far smaller
    assert none["max_prompt_tokens"] > 2 * ours["max_prompt_tokens"]
    assert none["max_prompt_tokens"] > 2 * naive["max_prompt_tokens"]
    # the naive planner's baseline was timed at the reported turns
    assert all(baseline[f"compression_cpu_ms_per_turn_at_{t}"] is not None for t in (6, 10, 20))
